"""Faces in decoded photos: the detector protocol every detector meets, the whole-image
detector for photos that are already faces, and the largest face (the shopper paying).

Reading and decoding photos is in models/photos.py; the detectors themselves in
models/blazeface.py (the default) and models/mtcnn.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class FaceBox:
    """A face in image pixels: top-left corner, width, height, detector confidence."""

    x: int
    y: int
    w: int
    h: int
    confidence: float
    # The eyes as (x, y, x, y) in image pixels, the eye on the image's left first; None
    # from a detector without keypoints. The crop turns the face so that they are level
    # (models/crop.py).
    eyes: tuple[float, float, float, float] | None = None

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
        height, width = check_image(image)
        return [FaceBox(0, 0, width, height, 1.0)]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self.detect(image) for image in images]

    def clone(self) -> WholeImageDetector:
        """Itself: it holds no state, so threads may share it."""
        return self

    def warm_up(self) -> None:
        """Nothing to load."""


def check_detector_options(min_face_size: int, min_confidence: float) -> None:
    """The options every detector takes, checked alike."""
    if min_face_size < 1:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")


def check_image(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an HxWx3 uint8 RGB image; a ValueError for anything else, so
    every detector refuses the same inputs."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")
    return image.shape[0], image.shape[1]


def largest_face(boxes: Sequence[FaceBox]) -> FaceBox | None:
    """The face nearest the camera is the shopper paying; people behind appear smaller."""
    return max(boxes, key=lambda b: (b.area, b.confidence), default=None)
