"""Camera conditions (models/camera.py): applied to generated images, seeded, bounded."""

from __future__ import annotations

import numpy as np
import pytest

from models.camera import (
    COMBINED,
    CONDITIONS,
    RANGES,
    Camera,
    camera_from_card,
    degrade_face,
    degrade_frame,
    jpeg_roundtrip,
    random_camera,
    rotate,
)
from models.quality import exposure, sharpness


def _face(side: int = 64, seed: int = 0) -> np.ndarray:
    """A textured square: gradients and a checker, so blur and noise show."""
    rng = np.random.default_rng(seed)
    u = np.linspace(0, 1, side)
    base = 60 + 120 * u[None, :, None] * np.ones((side, side, 3))
    checker = ((np.arange(side)[:, None] // 4 + np.arange(side)[None, :] // 4) % 2) * 40
    base = base + checker[:, :, None] + rng.normal(0, 3, (side, side, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_each_condition_keeps_shape_and_dtype_and_changes_the_face(name):
    face = _face(128)
    for camera in CONDITIONS[name]:
        out = degrade_face(face, camera, np.random.default_rng(0))
        assert out.shape == face.shape and out.dtype == np.uint8
        assert not np.array_equal(out, face)


def test_clean_camera_changes_nothing():
    face = _face()
    assert Camera().clean
    assert np.array_equal(degrade_face(face, Camera(), np.random.default_rng(0)), face)


def test_strengths_go_the_right_way():
    face, rng = _face(), np.random.default_rng(0)
    clean_mean, clean_std = exposure(face)
    under, strong_under = CONDITIONS["under_exposed"]
    assert exposure(degrade_face(face, strong_under, rng))[0] < exposure(
        degrade_face(face, under, rng))[0] < clean_mean
    assert exposure(degrade_face(face, CONDITIONS["over_exposed"][0], rng))[0] > clean_mean
    assert exposure(degrade_face(face, CONDITIONS["low_contrast"][1], rng))[1] < clean_std
    base = sharpness(degrade_face(face, Camera(face_px=64), rng))
    for name in ("focus_blur", "motion_blur"):
        mild, strong = (sharpness(degrade_face(face, replace_px(c), rng))
                        for c in CONDITIONS[name])
        assert strong < mild < base, name


def replace_px(camera: Camera) -> Camera:
    """The camera at the face's own size, so blur is measured without resampling."""
    from dataclasses import replace

    return replace(camera, face_px=64)


def test_combined_and_frames():
    face = _face(128)
    for camera in COMBINED.values():
        out = degrade_face(face, camera, np.random.default_rng(1))
        assert out.shape == face.shape and out.dtype == np.uint8
    frame = np.dstack([_face(200)[:, :, 0]] * 3)[:150]
    out = degrade_frame(frame, COMBINED["strong"], np.random.default_rng(1))
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_random_camera_is_seeded_and_inside_the_ranges():
    cams = [random_camera(np.random.default_rng(7)) for _ in range(2)]
    assert cams[0] == cams[1]
    rng = np.random.default_rng(3)
    drawn = [random_camera(rng) for _ in range(400)]
    assert any(c.clean for c in drawn) and sum(not c.clean for c in drawn) > 300
    for c in drawn:
        lo, hi = RANGES["exposure"]
        assert lo <= c.exposure <= hi
        assert c.contrast == 1.0 or RANGES["contrast"][0] <= c.contrast <= RANGES["contrast"][1]
        assert all(RANGES["cast"][0] <= g <= RANGES["cast"][1] for g in c.cast)
        assert 0 <= c.blur <= RANGES["blur"][1] and 0 <= c.motion <= RANGES["motion"][1]
        assert 0 <= c.noise <= RANGES["noise"][1]
        assert c.jpeg == 0 or RANGES["jpeg"][0] <= c.jpeg <= RANGES["jpeg"][1]
        assert c.face_px == 0 or RANGES["face_px"][0] <= c.face_px <= RANGES["face_px"][1]
        assert abs(c.roll) <= RANGES["roll"][1]
    assert random_camera(rng, prob=0.0).clean


def test_degrading_is_seeded():
    face, camera = _face(), COMBINED["strong"]
    a = degrade_face(face, camera, np.random.default_rng(5))
    b = degrade_face(face, camera, np.random.default_rng(5))
    assert np.array_equal(a, b)


def test_card_round_trip_and_jpeg_and_rotate():
    camera = COMBINED["mild"]
    assert camera_from_card(camera.to_card()) == camera
    assert Camera().to_card() == {}
    face = _face()
    assert jpeg_roundtrip(face, 30).shape == face.shape
    with pytest.raises(ValueError):
        jpeg_roundtrip(face, 0)
    turned = rotate(face, 20.0)
    assert turned.shape == face.shape and turned.dtype == np.uint8
    # No black corners: the edges are mirrored in.
    assert turned[0, 0].max() > 20 and turned[-1, -1].max() > 20
    with pytest.raises(ValueError):
        degrade_face(face.astype(np.float32), camera, np.random.default_rng(0))


def test_camera_augment_in_the_training_pipeline(tmp_path):
    import tensorflow as tf

    from models.data import camera_augment, face_dataset
    from tests.faces_data import write_labelled_faces

    face = tf.constant(_face(64).astype(np.float32))
    assert camera_augment(face, 0.0) is face
    tf.random.set_seed(11)
    first = [camera_augment(face, 1.0).numpy() for _ in range(3)]
    tf.random.set_seed(11)
    again = [camera_augment(face, 1.0).numpy() for _ in range(3)]
    for a, b in zip(first, again):
        assert a.shape == (64, 64, 3) and a.dtype == np.float32
        assert a.min() >= 0.0 and a.max() <= 255.0
        assert np.array_equal(a, b)  # seeded
    assert any(not np.array_equal(a, face.numpy()) for a in first)

    import pandas as pd

    csv = write_labelled_faces(tmp_path, n=8, size=40)
    labels = pd.read_csv(csv)
    paths = [str(tmp_path / "images" / f) for f in labels["file_name"]]
    ds = face_dataset(paths, labels["real_age"].to_numpy(), 32, 4, training=True,
                      camera_prob=0.5)
    images, ages = next(iter(ds))
    assert images.shape == (4, 32, 32, 3) and images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= 0.0 and float(tf.reduce_max(images)) <= 255.0
    with pytest.raises(ValueError):
        face_dataset(paths, labels["real_age"].to_numpy(), 32, 4, camera_prob=1.5)
