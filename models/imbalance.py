"""Weights for rare ages: pure functions over arrays.

UTKFace holds few teenagers (3.5 % are 13-17) and many 25-35 year olds, so a model trained
on it pulls rare ages toward the crowded middle: the teenagers whom Challenge 25 exists for
look older than they are. Two remedies:

- `lds_weights`: label-distribution smoothing (Yang et al. 2021, "Delving into Deep
  Imbalanced Regression"). The label histogram, smoothed by a Gaussian because neighbouring
  ages look alike, estimates how densely each age is covered; each face is weighted by the
  inverse square root of that density, normalised to a mean of 1.
- `band_weights`: a plain multiplier per age band, e.g. for the P(age < 25) head, to weight
  its loss toward the 13-30 year olds on either side of the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

# The P(under 25) head's default emphasis: the faces on either side of the line.
DECISION_BANDS: dict[tuple[float, float], float] = {(13.0, 31.0): 3.0}


def lds_weights(ages: np.ndarray, sigma: float = 2.0, max_age: int = 100,
                max_weight: float = 5.0) -> np.ndarray:
    """Per-face weights, mean 1: inverse square root of the Gaussian-smoothed label density
    (whole-year bins), capped at `max_weight` times the mean so a handful of centenarians
    cannot dominate a batch."""
    ages = np.asarray(ages, dtype=np.float64)
    if ages.size == 0:
        return np.ones(0, np.float32)
    if sigma <= 0:
        raise ValueError("sigma must be positive")
    years = np.clip(np.floor(ages), 0, max_age).astype(int)
    counts = np.bincount(years, minlength=max_age + 1).astype(np.float64)
    radius = int(math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    density = np.convolve(np.pad(counts, radius, mode="edge"), kernel / kernel.sum(), "valid")
    weights = 1.0 / np.sqrt(np.maximum(density[years], 1e-6))
    for _ in range(20):  # cap, renormalise, until the cap holds after renormalising
        weights = weights / weights.mean()
        if weights.max() <= max_weight * (1 + 1e-6):
            break
        weights = np.minimum(weights, max_weight)
    return weights.astype(np.float32)


def band_weights(ages: np.ndarray,
                 bands: Mapping[tuple[float, float], float] = DECISION_BANDS) -> np.ndarray:
    """Per-face weights, mean 1: `bands[(low, high)]` for ages in [low, high), 1 elsewhere."""
    ages = np.asarray(ages, dtype=np.float64)
    weights = np.ones(len(ages))
    for (low, high), factor in bands.items():
        if factor <= 0:
            raise ValueError(f"band weight for {low}-{high} must be positive")
        weights[(ages >= low) & (ages < high)] = factor
    return (weights / weights.mean()).astype(np.float32) if len(ages) else weights
