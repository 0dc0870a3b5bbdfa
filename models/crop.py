"""The face-crop contract: how a detector's box becomes the square the age model sees.

The model learns from face files (UTKFace-style: a square, aligned crop of the face with a
little hair and chin). At night it sees checkout photos, where a detector finds the face and
we cut a square out around the detector's box. The two framings must match: a crop that is
30 % wider than the training faces costs more than half the model's accuracy (issue 11:
MAE 12.96 with MTCNN's box widened by 20 % a side, 6.45 with the box as it is).

So the square is not "the box plus a margin" guessed once: each detector's boxes are
*calibrated* against the training framing. `calibrate` pastes training faces into plain
scenes at known squares, runs the detector, and fits, per detector, the side and centre of
the known square relative to the box. The fitted `CropContract` is written on the model's
card (`crop` key), so a model file and the crop it expects travel together, as its
preprocessing does. Training adds the jitter a detector produces around that framing
(models/data.py), so the remaining framing error costs little.

The training files are also *aligned*: the eyes level. A shopper looking down at the card
reader or tilting to the screen is not, and a head turned 20 degrees costs the model
(bench/camera_quality.py). So where the detector gives eye keypoints (BlazeFace and MTCNN
both do), the square is turned about its centre until the eyes are level (`align`), and
the card says the contract does so. The square's side and centre stay the contract's:
turning a face does not move or resize it, so the calibration of upright pasted faces
still holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image

from models.faces import FaceBox, check_image

WHOLE_IMAGE = "whole-image"


@dataclass(frozen=True)
class CropContract:
    """Where the training square lies relative to a detector's box.

    With s = (box.w + box.h) / 2: the square's side is `scale` x s and its centre is the
    box's centre moved by (`dx` x s, `dy` x s). The mean of the two sides is used because
    detectors differ in aspect (MTCNN's boxes are taller than wide, BlazeFace's square).
    With `align`, the square is turned about its centre so that the box's eyes are level.
    """

    detector: str
    scale: float
    dx: float = 0.0
    dy: float = 0.0
    faces: int = 0  # how many detected faces the fit used (0: set by hand)
    align: bool = True

    def square(self, box: FaceBox) -> tuple[float, float, float]:
        """(centre x, centre y, side) of the model's square for `box`, in photo pixels."""
        s = (box.w + box.h) / 2
        return box.x + box.w / 2 + self.dx * s, box.y + box.h / 2 + self.dy * s, self.scale * s

    def to_card(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v)
                for k, v in asdict(self).items() if k != "detector"}


# Contracts for cards written before contracts existed: `calibrate` on 400 faces of the
# training split of ../shared/faces (UTKFace framing, both sources; seed 0). The 200 px and
# 64 px sources alone give sides within 1.5 % of these. A card's own `crop` entry wins.
DEFAULT_CONTRACTS = {
    WHOLE_IMAGE: CropContract(WHOLE_IMAGE, 1.0),
    "blazeface": CropContract("blazeface", 1.0876, 0.0113, -0.0121, 400),
    "mtcnn": CropContract("mtcnn", 1.0667, 0.0236, 0.0745, 393),
}


def contract_for(card: dict[str, Any], detector: str) -> CropContract:
    """The contract the model's card names for `detector`, else the calibrated default."""
    entry = (card.get("crop") or {}).get(detector)
    if entry:
        return CropContract(detector, float(entry["scale"]), float(entry.get("dx", 0.0)),
                            float(entry.get("dy", 0.0)), int(entry.get("faces", 0)),
                            bool(entry.get("align", True)))
    if detector not in DEFAULT_CONTRACTS:
        raise KeyError(f"no crop contract for detector {detector!r} on the model's card")
    return DEFAULT_CONTRACTS[detector]


# Under this tilt the square is cut as it is: on a noisy or small face the keypoints move
# by a degree or two, and turning by that would only resample the face for nothing.
MIN_ROLL_DEGREES = 2.0
# More than this is not a tilted head but a wrong keypoint (a face on its side is not a
# shopper at a till): the square is cut as it is.
MAX_ROLL_DEGREES = 45.0


def eye_roll(box: FaceBox) -> float:
    """How far the face is turned in the image plane, in degrees: the angle of the line
    from the eye on the image's left to the other one (positive: clockwise on screen, as
    y grows downwards); 0 without eye keypoints."""
    eyes = getattr(box, "eyes", None)
    if not eyes:
        return 0.0
    x0, y0, x1, y1 = eyes
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    return math.degrees(math.atan2(y1 - y0, x1 - x0))


def crop_face(image: np.ndarray, box: FaceBox, size: int, contract: CropContract) -> np.ndarray:
    """The size x size x 3 uint8 square the contract puts around `box`, turned so the eyes
    are level when the contract aligns and the box has eye keypoints.

    Parts of the square outside the photo repeat the edge pixels: black bars would be a
    strong feature the age model never saw in training.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    height, width = check_image(image)
    cx, cy, side_f = contract.square(box)
    side = max(1, round(side_f))
    roll = eye_roll(box) if contract.align else 0.0
    if MIN_ROLL_DEGREES <= abs(roll) <= MAX_ROLL_DEGREES:
        return _turned_square(image, cx, cy, side, roll, size)
    x0, y0 = round(cx - side / 2), round(cy - side / 2)
    x1, y1 = x0 + side, y0 + side
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if ix0 >= ix1 or iy0 >= iy1:
        raise ValueError(f"{box} does not overlap the {width}x{height} image")
    patch = image[iy0:iy1, ix0:ix1]
    pad = ((iy0 - y0, y1 - iy1), (ix0 - x0, x1 - ix1), (0, 0))
    if any(before or after for before, after in pad):
        patch = np.pad(patch, pad, mode="edge")
    square = Image.fromarray(np.ascontiguousarray(patch))
    return np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _turned_square(image: np.ndarray, cx: float, cy: float, side: int, roll: float,
                   size: int) -> np.ndarray:
    """The square of `side` centred at (cx, cy), turned by `roll` degrees so that what was
    tilted is level, at size x size.

    Turned at twice the output size and then halved: the patch is first resized as
    `crop_face` resizes (averaging when it shrinks), so noise and JPEG blocks are not
    aliased into the crop, and the turn's interpolation blurs only at a resolution the
    final halving averages away. Outside the photo the edge pixels repeat.
    """
    height, width = image.shape[:2]
    reach = side * 0.75 + 2  # a turned square's corners reach side / sqrt(2) from its centre
    x0, y0 = math.floor(cx - reach), math.floor(cy - reach)
    x1, y1 = math.ceil(cx + reach), math.ceil(cy + reach)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if ix0 >= ix1 or iy0 >= iy1:
        raise ValueError(f"the square at ({cx:.0f}, {cy:.0f}) does not overlap the "
                         f"{width}x{height} image")
    patch = image[iy0:iy1, ix0:ix1]
    pad = ((iy0 - y0, y1 - iy1), (ix0 - x0, x1 - ix1), (0, 0))
    if any(before or after for before, after in pad):
        patch = np.pad(patch, pad, mode="edge")
    fine = 2 * size
    scale = fine / side
    source = Image.fromarray(np.ascontiguousarray(patch))
    source = source.resize((max(1, round(source.width * scale)),
                            max(1, round(source.height * scale))), Image.Resampling.BILINEAR)
    centre = ((cx - x0) * scale, (cy - y0) * scale)
    # PIL turns counter-clockwise on screen for a positive angle: that undoes the clockwise
    # tilt `roll` (the eye line's angle with y growing downwards).
    turned = source.rotate(roll, Image.Resampling.BICUBIC, center=centre)
    left, top = round(centre[0] - fine / 2), round(centre[1] - fine / 2)
    square = turned.crop((left, top, left + fine, top + fine)).reduce(2)
    return np.asarray(square, dtype=np.uint8)


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Placement:
    """A face file pasted into a plain scene at a known square."""

    image: np.ndarray
    x: int
    y: int
    side: int


def place_face(face: np.ndarray, rng: np.random.Generator,
               size: tuple[int, int] = (640, 480), side: int | None = None) -> Placement:
    """The whole face file, resized to `side` (default 100-220 px), pasted at a random spot
    on a plain, noisy wall: the face file's own framing is then known to the pixel."""
    width, height = size
    side = int(side or rng.integers(100, 221))
    wall = rng.uniform(60, 220, 3) * np.ones((height, width, 3))
    wall += rng.normal(0, 6, wall.shape)
    x = int(rng.integers(0, width - side))
    y = int(rng.integers(0, height - side))
    pasted = Image.fromarray(np.ascontiguousarray(face)).resize((side, side),
                                                               Image.Resampling.LANCZOS)
    wall[y : y + side, x : x + side] = np.asarray(pasted, dtype=np.float64)
    return Placement(np.clip(wall, 0, 255).astype(np.uint8), x, y, side)


def calibrate(detector: Any, faces: Sequence[np.ndarray], seed: int = 0) -> CropContract:
    """Fit `detector`'s contract: paste each face at a known square, detect, and take the
    median side and centre offset of the known square relative to the box found in it.

    Medians, because a few faces are found badly (a beard read as chin, a turned head);
    faces the detector misses are left out and counted.
    """
    rng = np.random.default_rng(seed)
    placed = [place_face(face, rng) for face in faces]
    found = detector.detect_many([p.image for p in placed])
    rows = []
    for p, boxes in zip(placed, found):
        box = _inside(boxes, p)
        if box is None:
            continue
        s = (box.w + box.h) / 2
        rows.append((p.side / s, (p.x + p.side / 2 - box.x - box.w / 2) / s,
                     (p.y + p.side / 2 - box.y - box.h / 2) / s))
    if len(rows) < max(10, len(faces) // 2):
        raise ValueError(f"{detector.name} found only {len(rows)} of {len(faces)} pasted "
                         "faces: too few to calibrate a crop")
    scale, dx, dy = np.median(np.array(rows), axis=0)
    return CropContract(detector.name, float(scale), float(dx), float(dy), len(rows))


def framing_error(contract: CropContract, box: FaceBox, x: int, y: int, side: int
                  ) -> tuple[float, float]:
    """How far the contract's square for `box` is from the true square (x, y, side):
    (relative side error, centre distance in sides). The tests' and benches' tolerance."""
    cx, cy, s = contract.square(box)
    return s / side - 1.0, float(np.hypot(cx - (x + side / 2), cy - (y + side / 2)) / side)


def _inside(boxes: Sequence[FaceBox], p: Placement) -> FaceBox | None:
    """The largest box whose centre lies in the pasted square."""
    hits = [b for b in boxes
            if p.x <= b.x + b.w / 2 <= p.x + p.side and p.y <= b.y + b.h / 2 <= p.y + p.side]
    return max(hits, key=lambda b: b.area, default=None)
