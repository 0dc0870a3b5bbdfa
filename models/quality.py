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

    The model copes with one poor condition at a time (each alone costs it at most about
    1.25x its clean error) but not with several at once (a dim, flat, blurred, noisy face:
    2.7x). So a face is outside when it is *severely* off on one signal, or *poorly* on two
    or more of: exposure (dark or bright), spread (flat) and sharpness (blurred). Measured
    on the model's crop (64 px for the shipped model): the thresholds belong to that size.
    """

    dark: float = 100.0  # poor: mean luminance under this, or over `bright`
    bright: float = 190.0
    flat: float = 32.0  # poor: luminance spread under this
    blurred: float = 90.0  # poor: sharpness under this
    severe_dark: float = 50.0  # severe, alone enough
    severe_bright: float = 215.0
    severe_flat: float = 18.0
    severe_blurred: float = 30.0

    def outside(self, q: FaceQuality) -> bool:
        """Whether one face's signals are outside the handled ranges."""
        return bool(self.outside_mask(np.array([q.sharpness]), np.array([q.exposure_mean]),
                                      np.array([q.exposure_std]))[0])

    def outside_mask(self, sharp: np.ndarray, mean: np.ndarray, std: np.ndarray
                     ) -> np.ndarray:
        """`outside` for columns of signals (NaN, no face: not outside)."""
        sharp, mean, std = (np.asarray(v, dtype=np.float64) for v in (sharp, mean, std))
        with np.errstate(invalid="ignore"):
            poor = (((mean < self.dark) | (mean > self.bright)).astype(int)
                    + (std < self.flat).astype(int) + (sharp < self.blurred).astype(int))
            severe = ((mean < self.severe_dark) | (mean > self.severe_bright)
                      | (std < self.severe_flat) | (sharp < self.severe_blurred))
        return ((poor >= 2) | severe) & ~np.isnan(mean)


# Chosen with bench/camera_quality.py's conditions on 300 validation faces and the shipped
# model 20261204-214852 (README, "Cameras"): outside are 3 % of clean crops, 44 % of the
# combined mild and 95 % of the combined strong camera's.
HANDLED = HandledRanges()
