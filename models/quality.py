"""Cheap photo-quality signals of a face crop: is it sharp, is it exposed well?

Per aged photo the job records them beside the age (restricted `age_estimates` only), and
per store and day their medians (`camera_quality`), so an operator finds the camera whose
photos are dim, blurred or too far away before marketing trusts its numbers. They must be
cheap (a few hundred microseconds a face, against tens of milliseconds of detection) and
comparable between photos, so they are measured on the crop the model sees, at the
model's size, never on the whole photo.

- sharpness: the variance of the Laplacian of the face's luminance (Pertuz et al. 2013's
  LAP4, the usual focus measure): blur, motion, a face upscaled from few pixels and heavy
  JPEG all remove the fine detail it responds to; noise raises it, so it is read with
  exposure;
- exposure: the mean and the spread (std) of the face's luminance, 0-255: a dark or
  burnt-out face, or a flat one (low contrast), shows here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# ITU-R BT.601 luma weights, as JPEG's own Y channel.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class FaceQuality:
    """The signals of one face crop."""

    sharpness: float
    exposure_mean: float
    exposure_std: float


def luminance(image: np.ndarray) -> np.ndarray:
    """HxW float32 luma of an HxWx3 RGB image (0-255)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected HxWx3 RGB, got {image.shape}")
    return image.astype(np.float32) @ _LUMA


def sharpness(image: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of the luminance (interior pixels)."""
    y = luminance(image)
    if min(y.shape) < 3:
        return 0.0
    lap = (y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * y[1:-1, 1:-1])
    return float(lap.var())


def exposure(image: np.ndarray) -> tuple[float, float]:
    """(mean, std) of the luminance."""
    y = luminance(image)
    return float(y.mean()), float(y.std())


def face_quality(image: np.ndarray) -> FaceQuality:
    """All the signals of one crop."""
    mean, std = exposure(image)
    return FaceQuality(sharpness(image), mean, std)


@dataclass(frozen=True)
class HandledRanges:
    """The face-crop signals within which bench/camera_quality.py shows the model's ages
    hold up; a face outside them is aged but marked "low_quality" (models/score.py).

    Measured on the model's crop (64 px for the shipped model), so the thresholds belong to
    that size; `outside` names the first range a face is outside of, "" when inside.
    """

    min_sharpness: float
    min_exposure: float
    max_exposure: float
    min_spread: float

    def outside(self, q: FaceQuality) -> str:
        if q.exposure_mean < self.min_exposure:
            return "dark"
        if q.exposure_mean > self.max_exposure:
            return "bright"
        if q.exposure_std < self.min_spread:
            return "flat"
        if q.sharpness < self.min_sharpness:
            return "blurred"
        return ""

    def outside_mask(self, sharp: np.ndarray, mean: np.ndarray, std: np.ndarray
                     ) -> np.ndarray:
        """`outside` for columns of signals (NaN, no face: not outside)."""
        with np.errstate(invalid="ignore"):
            out = ((mean < self.min_exposure) | (mean > self.max_exposure)
                   | (std < self.min_spread) | (sharp < self.min_sharpness))
        return out & ~np.isnan(mean)


# Chosen from bench/camera_quality.py on the shipped model (README, "Cameras"): see there.
HANDLED = HandledRanges(min_sharpness=30.0, min_exposure=50.0, max_exposure=215.0,
                        min_spread=18.0)
