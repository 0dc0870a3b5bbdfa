"""Photo-quality signals (models/quality.py) on generated images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from models.quality import (
    HANDLED,
    FaceQuality,
    exposure,
    face_quality,
    luminance,
    sharpness,
)


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


def test_handled_ranges_one_severe_or_two_poor_signals():
    good = FaceQuality(400.0, 125.0, 50.0)
    assert not HANDLED.outside(good)
    # One poor signal alone is handled (the model copes with one condition at a time) ...
    assert not HANDLED.outside(FaceQuality(HANDLED.blurred - 1, 125.0, 50.0))
    assert not HANDLED.outside(FaceQuality(400.0, HANDLED.dark - 1, 50.0))
    # ... two are not, nor one severe.
    assert HANDLED.outside(FaceQuality(HANDLED.blurred - 1, HANDLED.dark - 1, 50.0))
    assert HANDLED.outside(FaceQuality(400.0, 125.0, HANDLED.severe_flat - 1))
    assert HANDLED.outside(FaceQuality(400.0, HANDLED.severe_bright + 1, 50.0))
    mask = HANDLED.outside_mask(np.array([400.0, 10.0, np.nan]),
                                np.array([125.0, 125.0, np.nan]),
                                np.array([50.0, 50.0, np.nan]))
    assert mask.tolist() == [False, True, False]


def test_a_degraded_camera_face_is_less_sharp():
    from models.camera import COMBINED, degrade_face

    rng = np.random.default_rng(0)
    u = np.linspace(0, 1, 200)
    face = np.clip(60 + 120 * u[None, :, None] + rng.normal(0, 25, (200, 200, 3)), 0, 255)
    face = face.astype(np.uint8)
    small = np.asarray(Image.fromarray(face).resize((64, 64), Image.BILINEAR))
    assert not HANDLED.outside(face_quality(small))
    worse = degrade_face(face, COMBINED["strong"], rng)
    worse = np.asarray(Image.fromarray(worse).resize((64, 64), Image.BILINEAR))
    assert face_quality(worse).sharpness < face_quality(small).sharpness


class _StubModel:
    """Ages every face 30: enough for estimate_batch's bookkeeping."""

    image_size = 64

    def predict_all(self, faces, batch_size=32):
        return np.full(len(faces), 30.0, np.float32), None, None

    def p_under(self, probs, head, age):
        return None


def test_estimate_batch_records_quality_and_marks_low_quality():
    from models.score import QUALITY_COLUMNS, SCORE_COLUMNS, PreparedPhoto, estimate_batch

    sharp = _texture()
    dark_flat = np.full((64, 64, 3), 30, np.uint8)  # severely dark and flat
    prepared = [PreparedPhoto(1, sharp, 1, "ok"),
                PreparedPhoto(2, dark_flat, 2, "several_faces"),
                PreparedPhoto(3, dark_flat, 1, "low_confidence"),
                PreparedPhoto(4, None, 0, "no_face")]
    frame = estimate_batch(prepared, _StubModel(), 32)
    assert list(frame.columns) == SCORE_COLUMNS
    assert frame["status"].tolist() == ["ok", "low_quality", "low_confidence", "no_face"]
    assert frame.loc[0, "sharpness"] == np.float32(sharpness(sharp))
    assert frame.loc[3, QUALITY_COLUMNS].isna().all()
    # float32 means: the summation order (numpy's SIMD path differs between CPUs) may leave
    # the last bit
    assert frame.loc[1, "exposure_mean"] == pytest.approx(30.0, abs=1e-4)
    assert frame.loc[1, "age"] == 30.0
