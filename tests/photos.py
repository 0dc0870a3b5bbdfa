"""Real photo files of every good, bad and odd kind the nightly job meets, for any test.

Each writer creates one file (or link, or folder) at the path it is given and returns that
path. `write_bad_photos(root)` lays them all out under a photo root and says what each
relative path should come to: a `models.photos.PhotoError` reason, or for decodable photos
"ok" (MTCNN finds a face) or "no_face" (decodes, but MTCNN finds none; a
`WholeImageDetector` still returns the whole image for these).
"""

from __future__ import annotations

import os
import struct
import zlib
from functools import lru_cache
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from demo.scenes import available_demo_faces, render_checkout_scene

DECODABLE = ("ok", "no_face")
EXIF_ORIENTATION = 0x0112


@lru_cache(maxsize=4)
def scene_image(seed: int = 7, face_px: int = 150) -> np.ndarray:
    """An upright 640x480 checkout scene with Grace Hopper's face (read-only array)."""
    face = available_demo_faces()[0][0]
    image = render_checkout_scene(
        face, np.random.default_rng(seed), face_px=face_px, second_face=False
    ).image
    image.setflags(write=False)
    return image


def _save(image: Image.Image, path: Path, fmt: str, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = BytesIO()
    image.save(buffer, format=fmt, **params)
    path.write_bytes(buffer.getvalue())
    return path


def scene_jpeg(path: Path, seed: int = 7, face_px: int = 150) -> Path:
    """A valid checkout photo with one real face."""
    return _save(Image.fromarray(scene_image(seed, face_px)), path, "JPEG", quality=90)


def drawn_face_jpeg(path: Path) -> Path:
    """A valid JPEG with a cartoon face (oval, eyes, nose, mouth): decodes, but is no
    photograph of a face."""
    image = Image.new("RGB", (320, 240), (200, 210, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse([110, 40, 210, 180], fill=(225, 185, 160), outline=(120, 80, 60), width=3)
    for eye_x in (138, 182):
        draw.ellipse([eye_x - 9, 88, eye_x + 9, 100], fill=(255, 255, 255))
        draw.ellipse([eye_x - 4, 90, eye_x + 4, 98], fill=(40, 30, 30))
    draw.line([160, 100, 154, 130, 164, 132], fill=(150, 100, 90), width=3)
    draw.arc([135, 130, 185, 160], start=20, end=160, fill=(150, 40, 50), width=4)
    return _save(image, path, "JPEG", quality=92)


def blank_jpeg(path: Path) -> Path:
    """A valid, evenly grey photo: a camera that saw nobody."""
    return _save(Image.new("RGB", (640, 480), (128, 128, 128)), path, "JPEG")


def empty_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def truncated_jpeg(path: Path, keep: float = 0.5) -> Path:
    """A real JPEG cut short, as after an interrupted upload."""
    data = BytesIO()
    Image.fromarray(scene_image()).save(data, format="JPEG", quality=90)
    full = data.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(full[: int(len(full) * keep)])
    return path


def text_as_jpg(path: Path) -> Path:
    """Not an image at all, despite the name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("camera 7 offline, no frame captured\n")
    return path


def alpha_png(path: Path) -> Path:
    """RGBA scene whose bottom 40 rows are fully transparent black (decode: white)."""
    rgba = np.dstack([scene_image(), np.full(scene_image().shape[:2], 255, np.uint8)])
    rgba[-40:] = 0
    return _save(Image.fromarray(rgba, "RGBA"), path, "PNG")


def sixteen_bit_png(path: Path) -> Path:
    """16-bit grayscale scene using the full 0-65535 range (PIL mode I;16)."""
    gray = np.asarray(Image.fromarray(scene_image()).convert("L"), dtype=np.uint32)
    low_bits = np.random.default_rng(0).integers(0, 200, gray.shape)
    deep = (gray * 257 + low_bits).clip(0, 65535).astype(np.uint16)
    return _save(Image.fromarray(deep), path, "PNG")


def cmyk_jpeg(path: Path) -> Path:
    return _save(Image.fromarray(scene_image()).convert("CMYK"), path, "JPEG", quality=92)


def grayscale_jpeg(path: Path) -> Path:
    return _save(Image.fromarray(scene_image()).convert("L"), path, "JPEG", quality=90)


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored rotated 90 degrees anticlockwise (480 wide, 640 tall) with EXIF orientation 6,
    as phones write it; displayed (and decoded) it is the upright 640x480 scene."""
    stored = Image.fromarray(scene_image()).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    return _save(stored, path, "JPEG", quality=92, exif=exif.tobytes())


def one_pixel_png(path: Path) -> Path:
    return _save(Image.new("RGB", (1, 1), (10, 200, 30)), path, "PNG")


def png_named_jpg(path: Path) -> Path:
    """PNG content behind a .jpg name: decoders sniff content, so this is fine."""
    return _save(Image.fromarray(scene_image()), path, "PNG")


def bomb_png(path: Path, width: int = 30_000, height: int = 30_000) -> Path:
    """A complete, valid 1-bit PNG of `width` x `height` white pixels: about 100 KB on
    disk, about 2.7 GB once decoded to RGB. Written in streamed chunks, never in memory."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    row = b"\x00" + b"\xff" * ((width + 7) // 8)  # filter byte "none", then 8 px per byte
    rows_per_block = max(1, (1 << 20) // len(row))
    compressor = zlib.compressobj(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n")
        out.write(chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        done = 0
        while done < height:
            n = min(rows_per_block, height - done)
            compressed = compressor.compress(row * n)
            if compressed:
                out.write(chunk(b"IDAT", compressed))
            done += n
        out.write(chunk(b"IDAT", compressor.flush()))
        out.write(chunk(b"IEND", b""))
    return path


def symlink_to(path: Path, target: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, path)
    return path


def directory_named_like_photo(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def write_bad_photos(root: Path) -> dict[str, str]:
    """Lay out every kind of photo under `root` (plus one file in a sibling folder outside
    it) and return {path as stored in the database: expected outcome}."""
    root.mkdir(parents=True, exist_ok=True)
    outside_dir = root.parent / f"{root.name}_outside"
    secret = scene_jpeg(outside_dir / "secret.jpg")

    expected: dict[str, str] = {}

    def add(rel: str, outcome: str, writer=None, *args) -> None:
        if writer is not None:
            writer(root / rel, *args)
        expected[rel] = outcome

    add("ok.jpg", "ok", scene_jpeg)
    add("store_2/2024/ok_nested.jpg", "ok", scene_jpeg, 11, 110)
    add("exif_rotated.jpg", "ok", exif_rotated_jpeg)
    add("alpha.png", "ok", alpha_png)
    add("sixteen_bit.png", "ok", sixteen_bit_png)
    add("cmyk.jpg", "ok", cmyk_jpeg)
    add("grayscale.jpg", "ok", grayscale_jpeg)
    add("png_named.jpg", "ok", png_named_jpg)
    add("drawn_face.jpg", "no_face", drawn_face_jpeg)
    add("blank.jpg", "no_face", blank_jpeg)
    add("one_pixel.png", "no_face", one_pixel_png)
    add("empty.jpg", "empty", empty_file)
    add("truncated.jpg", "truncated", truncated_jpeg)
    add("notes.jpg", "not_an_image", text_as_jpg)
    add("bomb.png", "too_large", bomb_png, 9_000, 6_000)  # over 50 MP, under PIL's own limit
    add("folder.jpg", "not_a_file", directory_named_like_photo)
    add("link_outside.jpg", "outside_root", symlink_to, secret)
    add("missing.jpg", "missing")
    add(f"../{outside_dir.name}/secret.jpg", "outside_root")
    add(str(secret), "outside_root")  # absolute path
    return expected
