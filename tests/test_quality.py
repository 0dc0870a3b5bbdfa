"""Photo-quality signals (models/quality.py) on generated images."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from models.quality import exposure, face_quality, luminance, sharpness


def _texture(side: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 220, (side, side, 3), dtype=np.uint8)


def test_a_blurred_image_scores_lower_than_its_source():
    image = _texture()
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5)))
    more = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(3.0)))
    assert sharpness(more) < sharpness(blurred) < sharpness(image)


def test_a_flat_image_has_no_sharpness_and_no_spread():
    flat = np.full((32, 32, 3), 90, np.uint8)
    assert sharpness(flat) == 0.0
    mean, std = exposure(flat)
    assert abs(mean - 90) < 1e-3 and std < 1e-3


def test_exposure_follows_light():
    image = _texture()
    dark = (image * 0.4).astype(np.uint8)
    assert exposure(dark)[0] < exposure(image)[0]
    assert exposure(dark)[1] < exposure(image)[1]
    q = face_quality(image)
    assert q.exposure_mean == exposure(image)[0] and q.sharpness == sharpness(image)


def test_luminance_weights_green_most():
    pure = np.zeros((4, 4, 3), np.uint8)
    red, green = pure.copy(), pure.copy()
    red[..., 0] = 255
    green[..., 1] = 255
    assert luminance(green).mean() > luminance(red).mean()
    assert sharpness(np.zeros((2, 2, 3), np.uint8)) == 0.0
