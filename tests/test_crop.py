"""The face-crop contract and the BlazeFace detector: detect + crop of a face file pasted into
a photo must give back the face file's own framing, which is what the model trained on."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.blazeface import BlazeFaceDetector, anchors
from models.crop import (
    DEFAULT_CONTRACTS,
    CropContract,
    contract_for,
    crop_face,
    framing_error,
    place_face,
)
from models.faces import FaceBox
from models.mtcnn import MtcnnDetector
from models.persist import DEFAULT_MODEL_PATH, read_card
from models.photos import decode_photo, read_photo

# The tolerance the contract promises: the square cut around a detected face has a side
# within 10 % of the training framing's and a centre within 6 % of its side. Issue 11 measured
# what more costs: a 20 % wider square doubled the error on scenes.
SIDE_TOLERANCE = 0.10
CENTRE_TOLERANCE = 0.06

# Training framing (UTKFace-style face files) of two public-domain portraits that ship in
# installed packages, as (left, top, side) in the original image: the squares the calibrated
# contracts (fitted on 400 training faces) put around both detectors' boxes, averaged and
# rounded. Fixed here, so a change to a contract or to the crop geometry shows up.
_PORTRAITS = {
    "grace_hopper": (165, 130, 209),
    "astronaut": (171, 71, 108),
}


def _portrait(name: str) -> np.ndarray | None:
    if name == "grace_hopper":
        from matplotlib import cbook

        path = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    else:
        spec = importlib.util.find_spec("skimage")
        if spec is None:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png"
    return decode_photo(read_photo(path))


def face_files() -> list[tuple[str, np.ndarray]]:
    """Each portrait cut to its training framing, at the two sizes of the training data's
    sources (200 px and 64 px files)."""
    out = []
    for name, (left, top, side) in _PORTRAITS.items():
        image = _portrait(name)
        if image is None:
            continue
        square = Image.fromarray(image[top : top + side, left : left + side])
        for px in (200, 64):
            out.append((f"{name}@{px}", np.asarray(square.resize((px, px), Image.LANCZOS))))
    return out


@pytest.fixture(scope="module")
def blazeface() -> BlazeFaceDetector:
    return BlazeFaceDetector()


def _framing_errors(detector, contract: CropContract, seed: int = 3) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    errors = []
    for name, face in face_files():
        for side in (90, 150, 220):
            placed = place_face(face, rng, side=side)
            boxes = detector.detect(placed.image)
            assert boxes, f"{detector.name} found no face in {name} pasted at {side} px"
            box = max(boxes, key=lambda b: b.area)
            errors.append(framing_error(contract, box, placed.x, placed.y, placed.side))
    return errors


def _within(errors: list[tuple[float, float]]) -> bool:
    return all(abs(s) <= SIDE_TOLERANCE and c <= CENTRE_TOLERANCE for s, c in errors)


def test_blazeface_crop_reproduces_the_training_framing(blazeface):
    contract = contract_for(read_card(DEFAULT_MODEL_PATH), "blazeface")
    errors = _framing_errors(blazeface, contract)
    assert len(errors) >= 6
    assert _within(errors), errors
    # The tolerance is not loose: the old crop (box + 20 % margin a side) falls outside it.
    widened = dataclasses.replace(contract, scale=contract.scale * 1.4)
    assert not _within(_framing_errors(blazeface, widened))


@pytest.mark.slow
def test_mtcnn_crop_reproduces_the_training_framing():
    contract = contract_for(read_card(DEFAULT_MODEL_PATH), "mtcnn")
    detector = MtcnnDetector()
    assert _within(_framing_errors(detector, contract))
    assert not _within(_framing_errors(detector, dataclasses.replace(contract, dy=0.2)))


def test_contract_square_and_card_round_trip():
    contract = CropContract("d", 1.5, 0.1, -0.2)
    assert contract.square(FaceBox(100, 50, 40, 60, 0.9)) == (125.0, 70.0, 75.0)
    again = contract_for({"crop": {"d": contract.to_card()}}, "d")
    assert again == contract
    assert contract_for({}, "mtcnn") == DEFAULT_CONTRACTS["mtcnn"]
    with pytest.raises(KeyError):
        contract_for({}, "no-such-detector")


def test_crop_face_cuts_the_contract_square():
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:200] = (200, 50, 50)
    box = FaceBox(120, 70, 60, 60, 0.99)
    crop = crop_face(image, box, 64, CropContract("d", 1.4))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert (crop == (200, 50, 50)).all()  # 84 px around the box's centre: inside the square
    wide = crop_face(image, box, 64, CropContract("d", 2.2))
    assert (wide[0, 0] == 0).all() and (wide[32, 32] == (200, 50, 50)).all()
    shifted = crop_face(image, box, 64, CropContract("d", 1.0, dx=1.0))  # x 180-240: 20 px red
    assert (shifted[:, :18] == (200, 50, 50)).all() and (shifted[:, 26:] == 0).all()


def test_crop_face_pads_at_edges_with_edge_pixels():
    image = np.full((100, 100, 3), 90, np.uint8)
    image[0, :] = (255, 0, 0)  # top row red
    image[:, 0] = (0, 0, 255)  # left column blue
    image[0, 0] = (0, 255, 0)
    crop = crop_face(image, FaceBox(0, 0, 40, 40, 0.9), 60, CropContract("d", 2.0))
    assert crop.shape == (60, 60, 3)
    # the square starts 20 px above and left of the image: those rows/cols repeat the edge
    assert crop[2, 2].tolist() == [0, 255, 0]
    assert crop[2, 40].tolist() == [255, 0, 0]
    assert crop[40, 2].tolist() == [0, 0, 255]
    with pytest.raises(ValueError):
        crop_face(image, FaceBox(500, 500, 10, 10, 0.9), 32, CropContract("d", 1.0))
    with pytest.raises(ValueError):
        crop_face(image, FaceBox(0, 0, 10, 10, 0.9), 0, CropContract("d", 1.0))


# --------------------------------------------------------------------------- BlazeFace


def test_anchors_match_the_network_outputs():
    centres = anchors()
    assert centres.shape == (896, 2)
    assert centres.min() > 0 and centres.max() < 1
    # first grid: 16 x 16 cells, two anchors each, row by row
    assert centres[0].tolist() == centres[1].tolist() == [1 / 32, 1 / 32]
    assert centres[2].tolist() == [3 / 32, 1 / 32]
    assert centres[512].tolist() == [1 / 16, 1 / 16]  # second grid starts at 8 x 8


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (300, 300)])
def test_blazeface_maps_boxes_back_through_the_letterbox(blazeface, size):
    """Landscape, portrait and square photos are padded differently to the network's square;
    the face must come back where it was pasted, and empty photos give no face."""
    name, face = face_files()[0]
    rng = np.random.default_rng(4)
    placed = place_face(face, rng, size=size, side=120)
    boxes = blazeface.detect(placed.image)
    assert len(boxes) == 1
    box = boxes[0]
    assert 0.5 <= box.confidence <= 1.0
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    assert abs(cx - (placed.x + 60)) < 15 and abs(cy - (placed.y + 60)) < 15
    empty = np.full((size[1], size[0], 3), 128, np.uint8)
    assert blazeface.detect(empty) == []


def test_blazeface_drops_faces_under_the_size_and_confidence_cut(blazeface):
    _, face = face_files()[0]
    placed = place_face(face, np.random.default_rng(5), side=120)
    assert BlazeFaceDetector(min_face_size=200).detect(placed.image) == []
    assert BlazeFaceDetector(min_confidence=1.0).detect(placed.image) == []
    with pytest.raises(ValueError):
        BlazeFaceDetector(min_confidence=1.5)
