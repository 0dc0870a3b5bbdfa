"""Checkout photos: find them safely under the photo root, read and decode them defensively.

Photos come from cameras and file shares we do not control, so every way a file can be bad
(missing, not a file, outside the photo root, empty, not an image, cut short, a decompression
bomb) becomes a `PhotoError` with a short reason code that the nightly job counts and
quarantines; one bad photo never stops a run. Nothing here writes to disk, and nothing
needs TensorFlow.
"""

from __future__ import annotations

import contextlib
import os
import stat
import struct
from io import BytesIO
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

REASONS = (
    "missing",
    "not_a_file",
    "outside_root",
    "unreadable",
    "empty",
    "not_an_image",
    "truncated",
    "too_large",
    "unsupported",
)
# The reasons given before a photo's bytes are read: its file could not even be opened.
UNOPENED_REASONS = ("missing", "outside_root", "not_a_file", "unreadable")
MAX_PIXELS = 50_000_000  # from the header; a 12 MP camera frame is 12_000_000
MAX_BYTES = 100_000_000  # a camera JPEG is a few MB; anything bigger is not a checkout photo
MAX_SIDE = 1280  # decoded photos are shrunk to this: detection works at 640 or less anyway

# Formats we decode. Others (EPS runs Ghostscript, TIFF has a long CVE history, ...) are
# refused: checkout cameras write JPEG, and the demo writes JPEG and PNG. Multi-picture
# JPEGs (format "MPO") open through the JPEG plugin.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
_ALLOWED_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")
_OTHER_IMAGE_MAGIC = (
    b"II*\x00",  # TIFF
    b"MM\x00*",
    b"GIF87a",
    b"GIF89a",
    b"8BPS",  # Photoshop
    b"%!PS",  # PostScript / EPS
    b"\xc5\xd0\xd3\xc6",  # DOS EPS
    b"\x00\x00\x01\x00",  # ICO
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL ",
)
_LOAD_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


class PhotoError(Exception):
    """A photo that cannot be used; `reason` is one of `REASONS`, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# --------------------------------------------------------------------------- files


def resolve_photo_path(root: Path, rel: str) -> Path:
    """The real path of `rel` under `root`, or `PhotoError`.

    Paths come from the database, so they are untrusted: absolute paths, `..` parts and
    symlinks that lead out of the root are refused before anything is opened, and only
    regular files pass (a FIFO named like a photo would otherwise hang the reader).
    """
    if not rel or "\x00" in rel:
        raise PhotoError("missing", f"no usable path: {rel!r}")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or Path(rel).is_absolute():
        raise PhotoError("outside_root", f"absolute path {rel!r}")
    if ".." in pure.parts:
        raise PhotoError("outside_root", f"'..' in path {rel!r}")
    try:
        real_root = Path(root).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise PhotoError("missing", f"photo root {root} is not available: {exc}") from exc
    try:
        real = (real_root / pure).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loop
        raise PhotoError("not_a_file", f"{rel}: {exc}") from exc
    if not real.is_relative_to(real_root):
        raise PhotoError("outside_root", f"{rel} resolves outside the photo root")
    try:
        mode = real.stat().st_mode
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise PhotoError("missing", f"{rel} does not exist") from exc
    except OSError as exc:
        raise PhotoError("unreadable", f"{rel}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise PhotoError("not_a_file", f"{rel} is {kind}")
    return real


def read_photo(path: Path, *, max_bytes: int = MAX_BYTES) -> bytes:
    """The file's bytes; a file that vanished since it was listed is `missing`.

    Opened non-blocking and without following a final symlink, then checked to be a
    regular file, so a path swapped for a FIFO or a link after `resolve_photo_path` is
    refused instead of hanging or escaping the root.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise PhotoError("missing", f"{path} vanished") from exc
    except IsADirectoryError as exc:
        raise PhotoError("not_a_file", f"{path} is a directory") from exc
    except OSError as exc:  # ELOOP from O_NOFOLLOW, permissions, I/O errors
        raise PhotoError("unreadable", f"{path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise PhotoError("not_a_file", f"{path} is not a regular file")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:  # EIO, or ESTALE when a file share loses the file mid-read
            raise PhotoError("unreadable", f"{path}: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise PhotoError("too_large", f"{path} is over {max_bytes} bytes")
    return data


# --------------------------------------------------------------------------- decoding


def decode_photo(
    data: bytes, max_pixels: int = MAX_PIXELS, *, max_side: int = MAX_SIDE
) -> np.ndarray:
    """HxWx3 uint8 RGB, upright (EXIF orientation applied), longest side <= `max_side`.

    The pixel count is checked from the header before any pixel is decoded, so a
    decompression bomb (a few KB that would inflate to gigabytes) costs nothing. JPEGs
    are decoded at a reduced scale (`draft`) when they are far bigger than needed. A file
    cut short is `truncated`: PIL's global LOAD_TRUNCATED_IMAGES is never turned on.
    """
    if not data:
        raise PhotoError("empty", "zero bytes")
    try:
        return _decode(bytes(data) if not isinstance(data, bytes) else data, max_pixels, max_side)
    except PhotoError:
        raise
    except Exception as exc:
        # PIL's plugins raise many exception types on hostile input (KeyError, TypeError,
        # ZeroDivisionError have all been reported against it). Whatever one photo does, it
        # must cost that photo only, never the night's run.
        raise PhotoError("unsupported", f"decoder failed: {type(exc).__name__}: {exc}") from exc


def _decode(data: bytes, max_pixels: int, max_side: int) -> np.ndarray:
    img = _open(data)
    width, height = img.size
    if width < 1 or height < 1:
        raise PhotoError("not_an_image", f"header says {width}x{height}")
    if width * height > max_pixels:
        raise PhotoError("too_large", f"{width}x{height} is over {max_pixels} pixels")
    if img.format in ("JPEG", "MPO"):
        img.draft("RGB", (max_side, max_side))
    try:
        img.load()
    except Image.DecompressionBombError as exc:
        raise PhotoError("too_large", str(exc)) from exc
    except _LOAD_ERRORS as exc:
        raise PhotoError("truncated", f"{img.format} {width}x{height}: {exc}") from exc
    with contextlib.suppress(*_LOAD_ERRORS):  # unreadable EXIF: keep pixels as stored
        ImageOps.exif_transpose(img, in_place=True)
    img = _to_resizable(img)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.array(_flatten(img), dtype=np.uint8)


def _open(data: bytes) -> Image.Image:
    """Read only the header; say why when PIL cannot."""
    try:
        return Image.open(BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PhotoError("too_large", str(exc)) from exc
    except UnidentifiedImageError as exc:
        head = data[:16]
        if head.startswith(_ALLOWED_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
            raise PhotoError("truncated", "image header is damaged or cut short") from exc
        if head.startswith(_OTHER_IMAGE_MAGIC) or head[4:8] == b"ftyp":  # HEIC/AVIF
            raise PhotoError("unsupported", f"image format not in {ALLOWED_FORMATS}") from exc
        raise PhotoError("not_an_image", "content is not a recognised image") from exc
    except _LOAD_ERRORS as exc:
        raise PhotoError("truncated", f"image header is damaged: {exc}") from exc


def _to_resizable(img: Image.Image) -> Image.Image:
    """Convert to L, LA, RGB or RGBA, which PIL resizes well, at the smallest size that
    keeps the information (grayscale stays one channel until after shrinking)."""
    mode = img.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return img
    if mode.startswith("I;16") or mode == "I":
        return _sixteen_bit_to_l(img)
    try:
        if mode == "P":
            return img.convert("RGBA" if "transparency" in img.info else "RGB")
        if mode in ("PA", "RGBa"):
            return img.convert("RGBA")
        if mode == "La":
            return img.convert("LA")
        if mode == "1":
            return img.convert("L")
        if mode in ("CMYK", "YCbCr", "RGBX", "LAB", "HSV"):
            return img.convert("RGB")
    except ValueError as exc:
        raise PhotoError("unsupported", f"cannot convert mode {mode}: {exc}") from exc
    raise PhotoError("unsupported", f"pixel mode {mode}")


# round(v * 255 / 65535) for every 16-bit value: scales instead of clipping at 255.
_SIXTEEN_TO_EIGHT = np.round(np.arange(65536) / 257.0).astype(np.uint8)


def _sixteen_bit_to_l(img: Image.Image) -> Image.Image:
    """16-bit grayscale (PIL modes I;16* or I) to 8-bit L by scaling the full range.

    `convert("L")` would clip everything above 255 to white. Done in row blocks so the
    lookup's index array stays small for big images.
    """
    values = np.asarray(img)
    out = np.empty(values.shape, dtype=np.uint8)
    for top in range(0, values.shape[0], 256):
        block = np.clip(values[top : top + 256], 0, 65535).astype(np.uint16)
        out[top : top + 256] = _SIXTEEN_TO_EIGHT[block]
    return Image.fromarray(out, mode="L")


def _flatten(img: Image.Image) -> Image.Image:
    """RGB; transparent areas become white, as a viewer would show them on paper."""
    if img.mode in ("LA", "RGBA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img
