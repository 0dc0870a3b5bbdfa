"""Checkout photos: find them safely, decode them defensively, find and crop the largest face.

Photos come from cameras and file shares we do not control, so every way a file can be bad
(missing, not a file, outside the photo root, empty, not an image, cut short, a decompression
bomb) becomes a `PhotoError` with a short reason code that the nightly job counts and
quarantines; one bad photo never stops a run. Nothing here writes to disk.

TensorFlow and mtcnn are imported only when an `MtcnnDetector` first detects, so commands
that never look for faces start fast.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, runtime_checkable

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


# --------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels: top-left corner, width, height, detector confidence."""

    x: int
    y: int
    w: int
    h: int
    confidence: float

    @property
    def area(self) -> int:
        return self.w * self.h


@runtime_checkable
class FaceDetector(Protocol):
    """What the scoring step needs from a detector.

    To run on several prep threads a detector also needs `clone()`: one with the same
    options that shares nothing unsafe between threads (itself, for one without state);
    `score_photos` asks for one per extra prep worker.
    """

    name: str  # names the detector's crop contract on the model's card (models/crop.py)
    confident: float  # faces found under this confidence are aged but marked low_confidence

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in an HxWx3 uint8 RGB image, in that image's pixel coordinates."""
        ...

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """`detect` for each image; batched where the detector gains from it."""
        ...

    def decode_side(self, image_size: int) -> int:
        """Longest side photos are decoded at: what the detector needs, no more."""
        ...

    def warm_up(self) -> None:
        """Load weights and trace graphs before the first photo."""
        ...


class WholeImageDetector:
    """For photos that are already face crops (training sets, rescoring crops): one face,
    the whole image. No TensorFlow needed.

    The crop is used as it is (its contract is the identity), the way training and
    `evaluate` read face files, and decoded straight at the model's size (JPEG's
    reduced-scale decoding) because nothing finer is needed.
    """

    name = "whole-image"
    confident = 0.0

    def decode_side(self, image_size: int) -> int:
        return image_size

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        height, width = _check_image(image)
        return [FaceBox(0, 0, width, height, 1.0)]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self.detect(image) for image in images]

    def clone(self) -> WholeImageDetector:
        """Itself: it holds no state, so threads may share it."""
        return self

    def warm_up(self) -> None:
        """Nothing to load."""


# mtcnn 1.0 sizes its image pyramid as if min_face_size were 20: with larger values the
# last levels fall under PNet's 12 px window and Keras 3 raises. So mtcnn always gets 20
# and we shrink the image instead, which is the same pyramid and less work.
_MTCNN_FACE_PX = 20
_PNET_WINDOW = 12


class MtcnnDetector:
    """MTCNN (weights ship inside the mtcnn wheel; nothing is downloaded).

    Runs on a copy shrunk so that the longest side is at most `max_side` and a face of
    `min_face_size` pixels (in the original photo) becomes the 20 px MTCNN looks for;
    boxes are mapped back to the original photo. Boxes under `min_confidence` are dropped.
    The square cut around a box is the model's crop contract for "mtcnn" (models/crop.py).
    """

    name = "mtcnn"
    confident = 0.95

    def decode_side(self, image_size: int) -> int:
        return MAX_SIDE

    def __init__(
        self, max_side: int = 640, min_face_size: int = 40, min_confidence: float = 0.8
    ) -> None:
        if max_side < _PNET_WINDOW:
            raise ValueError(f"max_side must be at least {_PNET_WINDOW}, got {max_side}")
        check_detector_options(min_face_size, min_confidence)
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_confidence = min_confidence
        self._mtcnn: Any = None

    def clone(self) -> MtcnnDetector:
        """The same options and networks of its own, for another prep thread."""
        return MtcnnDetector(self.max_side, self.min_face_size, self.min_confidence)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        small, scale = self._shrink(image)
        if small is None:
            return []
        found = self._model().detect_faces(small, min_face_size=_MTCNN_FACE_PX)
        return self._boxes(found, scale, image.shape)

    def warm_up(self) -> None:
        """Load MTCNN and trace its networks now (~3 s), so the first batch of photos is not
        charged for it and a broken install fails before any photo is read."""
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        self.detect_many([noise])

    def detect_many(
        self, images: Sequence[np.ndarray], batch_size: int = 16
    ) -> list[list[FaceBox]]:
        """Like `detect` for each image, batching images that shrink to the same shape
        (mtcnn pads a batch to its largest image, so mixed shapes would waste work)."""
        results: list[list[FaceBox]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray, float]]] = {}
        for i, image in enumerate(images):
            small, scale = self._shrink(image)
            if small is not None:
                groups.setdefault(small.shape, []).append((i, small, scale))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                found = self._model().detect_faces(
                    [small for _, small, _ in chunk], min_face_size=_MTCNN_FACE_PX
                )
                for (i, _, scale), faces in zip(chunk, found, strict=True):
                    results[i] = self._boxes(faces, scale, images[i].shape)
        return results

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray | None, float]:
        height, width = _check_image(image)
        scale = min(self.max_side / max(height, width), _MTCNN_FACE_PX / self.min_face_size)
        new_w, new_h = round(width * scale), round(height * scale)
        if min(new_w, new_h) < _PNET_WINDOW:
            return None, scale  # too small to hold a face of min_face_size
        if (new_w, new_h) == (width, height):
            return np.ascontiguousarray(image), 1.0
        resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
        return np.asarray(resized), new_w / width

    def _boxes(self, found: list[dict], scale: float, shape: tuple[int, ...]) -> list[FaceBox]:
        height, width = shape[:2]
        boxes = []
        for face in found:
            confidence = float(face["confidence"])
            if confidence < self.min_confidence:
                continue
            x, y, w, h = (float(v) / scale for v in face["box"])
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(width, round(x + w)), min(height, round(y + h))
            if x1 > x0 and y1 > y0:
                boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0, confidence))
        return boxes

    def _model(self) -> Any:
        if self._mtcnn is None:
            self._mtcnn = build_mtcnn()
        return self._mtcnn


def build_mtcnn(traced: bool = True) -> Any:
    """mtcnn's MTCNN with the weights inside its wheel; `traced` runs its networks as graphs
    (see `_compiled`), False as mtcnn ships them (for comparisons)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    # Absolute paths: given a bare name, mtcnn first tries ./pnet.lz4 in the current
    # directory, and those files are unpickled (joblib), i.e. can run code.
    weights = importlib.resources.files("mtcnn.assets.weights")
    stages = [
        StagePNet(weights=str(weights / "pnet.lz4")),
        StageRNet(weights=str(weights / "rnet.lz4")),
        StageONet(weights=str(weights / "onet.lz4")),
    ]
    # Input sides: PNet takes every pyramid level, RNet 24 px and ONet 48 px candidates.
    for stage, side in zip(stages if traced else (), (None, 24, 48)):
        model = getattr(stage, "_model", None)
        if model is not None:
            stage._model = _compiled(model, side)
    return MTCNN(stages=stages)


def _compiled(model: Any, side: int | None = None) -> Any:
    """A Keras model's forward pass as one TensorFlow graph.

    mtcnn calls its three small networks eagerly, op by op, and that dispatch cost more
    than the arithmetic: traced once, detection takes about a third less time and finds the
    same boxes (bench/faces_speed.py). The input signature (any batch, any pyramid level
    for PNet) makes it one trace per network: relaxed shapes traced each network twice, and
    as the three share this function's code, TensorFlow counted their traces together and
    warned of "tf.function retracing" on every run.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 3], tf.float32)])
    def forward(x: Any) -> Any:
        return model(x, training=False)

    return forward


def check_detector_options(min_face_size: int, min_confidence: float) -> None:
    """The options every detector takes, checked alike."""
    if min_face_size < 1:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")


def _check_image(image: np.ndarray) -> tuple[int, int]:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")
    return image.shape[0], image.shape[1]


def largest_face(boxes: Sequence[FaceBox]) -> FaceBox | None:
    """The face nearest the camera is the shopper paying; people behind appear smaller."""
    return max(boxes, key=lambda b: (b.area, b.confidence), default=None)
