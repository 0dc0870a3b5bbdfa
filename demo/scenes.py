"""Synthetic checkout-camera photos for the demo and the tests.

A scene is a shop wall with shelves, a counter band at the bottom, and a shopper's face
pasted above the counter with a soft oval edge, sometimes with a smaller second shopper
further back. Faces come from public-domain portraits that ship inside installed packages,
or from a labelled folder the caller points to. Nothing here writes files: callers decide
where scenes go (a demo or temporary folder, never the repository).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from models.photos import PhotoError, decode_photo, read_photo

FACE_PX = (90, 200)  # side of the pasted face square; MTCNN finds these reliably at 640x480
SECOND_FACE_PROB = 0.3

DemoFace = tuple[np.ndarray, float, str]  # (HxWx3 uint8 RGB face crop, age in years, name)


@dataclass(frozen=True)
class Scene:
    """A rendered scene and where its faces were pasted (x, y, side), largest first."""

    image: np.ndarray
    faces: list[tuple[int, int, int]]


def make_checkout_scene(
    face_rgb: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = (640, 480)
) -> bytes:
    """JPEG bytes of a (width, height) checkout scene showing `face_rgb`; see
    `render_checkout_scene`."""
    scene = render_checkout_scene(face_rgb, rng, size)
    buffer = BytesIO()
    quality = int(rng.integers(82, 93))
    Image.fromarray(scene.image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render_checkout_scene(
    face_rgb: np.ndarray,
    rng: np.random.Generator,
    size: tuple[int, int] = (640, 480),
    *,
    face_px: int | None = None,
    second_face: bool | None = None,
    paste: str = "oval",
) -> Scene:
    """The scene as an array plus the pasted face squares.

    `face_px` fixes the face size (default: random in `FACE_PX`); `second_face` forces a
    smaller shopper in the background on or off (default: random, 30%). The second face is
    the same portrait mirrored and dimmed, at 55-75% of the first's size. `paste` is
    "oval" (a soft oval of the face square) or "square" (the whole square, hard edges).
    """
    if paste not in ("oval", "square"):
        raise ValueError(f"paste must be 'oval' or 'square', not {paste!r}")
    width, height = size
    if width < 64 or height < 64:
        raise ValueError(f"scene size must be at least 64x64, got {size}")
    face = _square(Image.fromarray(np.ascontiguousarray(face_rgb)).convert("RGB"))
    canvas = _background(width, height, rng)
    counter_top = int(height * rng.uniform(0.72, 0.8))

    side = int(face_px if face_px is not None else rng.integers(FACE_PX[0], FACE_PX[1] + 1))
    side = max(16, min(side, counter_top - 4, width - 4))
    if second_face is None:
        second_face = bool(rng.random() < SECOND_FACE_PROB)
    placed: list[tuple[int, int, int]] = []
    if second_face:
        small = int(side * rng.uniform(0.55, 0.75))
        if small >= 40:
            # Background shopper first so the main one overlaps it, not the other way.
            x, y = _spot(width, counter_top, small, rng, avoid=None)
            dimmed = Image.eval(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), _dim)
            _paste_person(canvas, dimmed, x, y, small, counter_top, rng, paste)
            placed.append((x, y, small))
    x, y = _spot(width, counter_top, side, rng, avoid=placed[0] if placed else None)
    _paste_person(canvas, face, x, y, side, counter_top, rng, paste)
    placed.insert(0, (x, y, side))

    _counter(canvas, counter_top, rng)
    pixels = np.asarray(canvas, dtype=np.float32)
    pixels += rng.normal(0.0, 3.0, pixels.shape)  # sensor noise
    return Scene(np.clip(pixels, 0, 255).astype(np.uint8), placed)


def render_empty_scene(rng: np.random.Generator, size: tuple[int, int] = (640, 480)
                       ) -> np.ndarray:
    """The same shop and counter with nobody in it: where a detector must find no face."""
    width, height = size
    canvas = _background(width, height, rng)
    _counter(canvas, int(height * rng.uniform(0.72, 0.8)), rng)
    pixels = np.asarray(canvas, dtype=np.float32) + rng.normal(0.0, 3.0, (height, width, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _square(face: Image.Image) -> Image.Image:
    """Centre square, so non-square crops are not stretched when pasted."""
    width, height = face.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return face.crop((left, top, left + side, top + side))


def _dim(value: int) -> int:
    return int(value * 0.85)


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A lit wall (vertical gradient) with shelves of coloured packs."""
    top = rng.uniform(150, 235, 3)
    bottom = top * rng.uniform(0.55, 0.8)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    wall = (top * (1 - t) + bottom * t) * np.ones((1, width, 1))
    canvas = Image.fromarray(wall.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)
    shelf_color = tuple(int(c) for c in rng.integers(70, 140, 3))
    shelf_gap = int(rng.integers(height // 6, height // 4))
    for y in range(int(rng.integers(20, 50)), int(height * 0.7), shelf_gap):
        draw.rectangle([0, y + shelf_gap - 8, width, y + shelf_gap - 2], fill=shelf_color)
        x = int(rng.integers(0, 20))
        while x < width:
            w, h = int(rng.integers(14, 40)), int(rng.integers(shelf_gap // 3, shelf_gap - 12))
            color = tuple(int(c) for c in rng.integers(30, 250, 3))
            draw.rectangle([x, y + shelf_gap - 8 - h, x + w, y + shelf_gap - 9], fill=color)
            x += w + int(rng.integers(2, 10))
    return canvas.filter(ImageFilter.GaussianBlur(1.2))  # shelves are behind the focus plane


def _spot(
    width: int,
    counter_top: int,
    side: int,
    rng: np.random.Generator,
    avoid: tuple[int, int, int] | None,
) -> tuple[int, int]:
    """Top-left of a face square above the counter, clear of `avoid` when possible."""
    y_low = max(0, counter_top - side - int(side * 0.9))
    y_high = max(y_low, counter_top - side - int(side * 0.3))
    for _ in range(50):
        x = int(rng.integers(0, max(1, width - side)))
        y = int(rng.integers(y_low, y_high + 1))
        if avoid is None:
            return x, y
        ax, ay, aside = avoid
        if x + side <= ax or ax + aside <= x or y + side <= ay or ay + aside <= y:
            return x, y
    return x, y


def _paste_person(
    canvas: Image.Image,
    face: Image.Image,
    x: int,
    y: int,
    side: int,
    counter_top: int,
    rng: np.random.Generator,
    paste: str = "oval",
) -> None:
    """Shoulders down to the counter, then the face through a soft oval mask (or whole)."""
    draw = ImageDraw.Draw(canvas)
    shirt = tuple(int(c) for c in rng.integers(20, 220, 3))
    draw.rounded_rectangle(
        [x - side * 0.25, y + side * 0.88, x + side * 1.25, counter_top + side],
        radius=int(side * 0.4),
        fill=shirt,
    )
    mask = Image.new("L", (side, side), 0 if paste == "oval" else 255)
    if paste == "oval":
        inset = max(1, side // 14)
        ImageDraw.Draw(mask).ellipse([inset, 0, side - inset, side - 1], fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, side / 22)))
    canvas.paste(face.resize((side, side), Image.Resampling.LANCZOS), (x, y), mask)


def _counter(canvas: Image.Image, counter_top: int, rng: np.random.Generator) -> None:
    """The counter in front of the shopper, with a belt and a card terminal."""
    width, height = canvas.size
    draw = ImageDraw.Draw(canvas)
    top = tuple(int(c) for c in rng.integers(90, 200, 3))
    draw.rectangle([0, counter_top, width, height], fill=top)
    belt_top = counter_top + (height - counter_top) // 3
    draw.rectangle([0, belt_top, width, belt_top + (height - counter_top) // 3], fill=(35, 35, 38))
    tx = int(rng.integers(0, max(1, width - 60)))
    draw.rectangle([tx, counter_top - 30, tx + 40, counter_top + 6], fill=(25, 25, 25))
    draw.rectangle([tx + 6, counter_top - 24, tx + 34, counter_top - 10], fill=(80, 160, 90))


# --------------------------------------------------------------------------- faces

# Square face regions (left, top, right, bottom) inside each portrait: the MTCNN face box
# widened by 25%, so pasted faces keep hairline and chin like real checkout crops.
_GRACE_HOPPER_FACE = (127, 82, 402, 357)  # 512x600 image; MTCNN box 178,110 173x220
_ASTRONAUT_FACE = (156, 50, 290, 184)  # 512x512 image; MTCNN box 182,64 83x107


def available_demo_faces() -> list[DemoFace]:
    """Public-domain portraits that ship inside installed packages, cropped to the face,
    with the sitter's age when photographed.

    - Grace Hopper (matplotlib `grace_hopper.jpg`): the official U.S. Navy portrait of
      Commodore Grace M. Hopper dated 20 January 1984; born 9 December 1906, so 77.
    - Eileen Collins (scikit-image `astronaut`, only when scikit-image is installed): NASA
      portrait; born 19 November 1956. The photo's date is not documented by scikit-image;
      it is from her late-1990s astronaut portraits, so about 41, uncertain by a few years.
    """
    faces: list[DemoFace] = []
    from matplotlib import cbook

    hopper = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    faces.append((_crop(hopper, _GRACE_HOPPER_FACE), 77.0, "grace_hopper"))
    spec = importlib.util.find_spec("skimage")  # located, not imported: that is slow
    if spec is not None:
        for location in spec.submodule_search_locations or []:
            astronaut = Path(location) / "data" / "astronaut.png"
            if astronaut.is_file():
                faces.append((_crop(astronaut, _ASTRONAUT_FACE), 41.0, "eileen_collins"))
                break
    return faces


def _crop(path: Path, box: tuple[int, int, int, int]) -> np.ndarray:
    image = decode_photo(read_photo(path))
    left, top, right, bottom = box
    return np.ascontiguousarray(image[top:bottom, left:right])


def faces_from_dir(
    labels_csv: Path, images_dir: Path, n: int, rng: np.random.Generator
) -> list[DemoFace]:
    """`n` labelled faces (already face crops, e.g. UTKFace) drawn at random, for demo
    scenes with many different shoppers. Undecodable images are skipped and replaced.

    The faces are only returned, never written: they must not leave the demo scenes the
    caller writes into its own demo or temporary folder.
    """
    from models.labels import load_labels

    if n < 1:
        return []
    frame = load_labels(Path(labels_csv), Path(images_dir)).frame
    if frame.empty:
        raise ValueError(f"no usable labelled faces in {labels_csv}")
    faces: list[DemoFace] = []
    for i in rng.permutation(len(frame)):
        if len(faces) == n:
            break
        row = frame.iloc[int(i)]
        try:
            face = decode_photo(read_photo(Path(row["path"])))
        except PhotoError:
            continue
        faces.append((face, float(row["real_age"]), str(row["file_name"])))
    if not faces:
        raise ValueError(f"none of the labelled faces in {images_dir} could be decoded")
    distinct = len(faces)
    while len(faces) < n:  # small folders: reuse faces rather than fail the demo
        faces.append(faces[int(rng.integers(0, distinct))])
    return faces
