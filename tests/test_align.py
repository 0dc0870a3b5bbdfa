"""Eye alignment (models/crop.py): a tilted head gives a crop whose eyes are level, for
both detectors, and an upright face's crop is the contract's square as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from models.blazeface import BlazeFaceDetector
from models.camera import rotate
from models.crop import contract_for, crop_face, eye_roll, place_face
from models.faces import FaceBox
from models.mtcnn import MtcnnDetector
from tests.test_crop import face_files

TOLERANCE_DEGREES = 3.0


def _portrait() -> np.ndarray:
    return dict(face_files())["grace_hopper@200"]


def _largest(detector, image: np.ndarray) -> FaceBox:
    boxes = detector.detect(image)
    assert boxes, f"{detector.name} found no face"
    return max(boxes, key=lambda b: b.area)


def _check_levels_tilted_faces(detector) -> None:
    face = _portrait()
    contract = contract_for({}, detector.name)
    rng = np.random.default_rng(5)
    upright = _largest(detector, place_face(face, rng, side=160).image)
    assert upright.eyes is not None
    for tilt in (-20.0, -10.0, 10.0, 20.0):
        placed = place_face(rotate(face, tilt), rng, side=160)
        box = _largest(detector, placed.image)
        # PIL turns counter-clockwise for a positive angle: the eye line's angle (y down)
        # goes the other way.
        assert abs(eye_roll(box) - eye_roll(upright) + tilt) <= TOLERANCE_DEGREES, (tilt, box)
        aligned = crop_face(placed.image, box, 200, contract)
        again = _largest(detector, place_face(aligned, rng, side=160).image)
        assert abs(eye_roll(again)) <= TOLERANCE_DEGREES, (tilt, eye_roll(again))
        # Without alignment the crop keeps the tilt.
        unaligned = crop_face(placed.image, box, 200, dataclasses.replace(contract,
                                                                          align=False))
        kept = _largest(detector, place_face(unaligned, rng, side=160).image)
        assert abs(eye_roll(kept)) > abs(tilt) / 2


def test_blazeface_levels_tilted_faces():
    _check_levels_tilted_faces(BlazeFaceDetector())


@pytest.mark.slow
def test_mtcnn_levels_tilted_faces():
    _check_levels_tilted_faces(MtcnnDetector())


def test_eye_roll_and_upright_crops():
    box = FaceBox(10, 10, 40, 40, 0.9, eyes=(20.0, 20.0, 40.0, 30.0))
    assert eye_roll(box) == pytest.approx(np.degrees(np.arctan2(10, 20)))
    swapped = dataclasses.replace(box, eyes=(40.0, 30.0, 20.0, 20.0))
    assert eye_roll(swapped) == pytest.approx(eye_roll(box))
    assert eye_roll(FaceBox(0, 0, 5, 5, 1.0)) == 0.0
    # Level eyes (or none): the very square an unaligned contract cuts.
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    contract = contract_for({}, "blazeface")
    level = FaceBox(40, 30, 50, 50, 0.9, eyes=(50.0, 45.0, 80.0, 45.0))
    plain = dataclasses.replace(contract, align=False)
    assert np.array_equal(crop_face(image, level, 64, contract),
                          crop_face(image, level, 64, plain))
    # A turned crop keeps the square's size and stays a uint8 RGB square, even at an edge.
    edge = FaceBox(0, 0, 50, 50, 0.9, eyes=(10.0, 10.0, 40.0, 25.0))
    out = crop_face(image, edge, 64, contract)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    # A face on its side is a wrong keypoint, not a tilted head: cut as it is.
    side = dataclasses.replace(level, eyes=(60.0, 30.0, 61.0, 80.0))
    assert np.array_equal(crop_face(image, side, 64, contract),
                          crop_face(image, side, 64, plain))


def test_contract_align_on_the_card():
    contract = contract_for({}, "blazeface")
    assert contract.align
    card = {"crop": {"blazeface": dataclasses.replace(contract, align=False).to_card()}}
    assert card["crop"]["blazeface"]["align"] is False
    assert not contract_for(card, "blazeface").align
