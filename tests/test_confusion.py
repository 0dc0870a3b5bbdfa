"""The model's confusion: measured through the job's path, written onto a model's card
without touching its weights (`ageseg confusion`)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from models.confusion import Confusion, degrade_scene, with_confusion, write_card
from tests.faces_data import write_labelled_faces


def _fake_model(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("card.json", json.dumps({"version": "v1", "format": "x"}))
        zf.writestr("weights.npz", b"\x00\x01weights")
        zf.writestr("architecture.json", "{}")
    return path


def test_write_card_replaces_the_card_and_copies_the_rest(tmp_path):
    model = _fake_model(tmp_path / "m.ageseg")
    confusion = Confusion.from_ages([20, 30, 30, 70], [25, 28, float("nan"), 60], "test")
    out = write_card(model, with_confusion({"version": "v1", "format": "x"}, confusion),
                     tmp_path / "out" / "m.ageseg")
    with zipfile.ZipFile(out) as zf:
        card = json.loads(zf.read("card.json"))
        assert zf.read("weights.npz") == b"\x00\x01weights"
        assert zf.read("architecture.json") == b"{}"
    assert card["version"] == "v1" and card["confusion"]["faces"] == 4
    back = Confusion.from_card(card)
    assert back.counts[20, 25] == 1 and back.unaged[30] == 1
    # In place by default; the original's weights untouched.
    write_card(model, card)
    with zipfile.ZipFile(model) as zf:
        assert json.loads(zf.read("card.json"))["confusion"]["faces"] == 4


def test_group_accuracy_counts_faces_in_their_true_group():
    confusion = Confusion.from_ages([20, 20, 30, 40], [21, 27, 33, 60])
    assert confusion.group_accuracy((0, 18, 25, 35, 45, 55, 65)) == 0.5


def test_degraded_scenes_keep_their_shape():
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for seed in range(6):
        out = degrade_scene(image, np.random.default_rng(seed))
        assert out.shape == image.shape and out.dtype == np.uint8


def test_confusion_command_writes_the_card_without_retraining(tmp_path, tiny_model_path):
    from jobs.cli import cli

    write_labelled_faces(tmp_path / "faces", n=80)
    (tmp_path / "faces" / "images").rename(tmp_path / "faces" / "final_files")
    out = tmp_path / "with_confusion.ageseg"
    result = CliRunner().invoke(cli, ["confusion", str(tiny_model_path), "--faces",
                                      str(tmp_path / "faces"), "--out", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "validation scenes (each face twice clean, twice camera-degraded)" in result.output
    with zipfile.ZipFile(out) as new, zipfile.ZipFile(tiny_model_path) as old:
        card = json.loads(new.read("card.json"))
        assert new.read("weights.npz") == old.read("weights.npz")
    assert card["version"] == "test-tiny" and card["confusion"]["faces"] > 0
