"""Choosing the scoring runtime (`--runtime auto|keras|litert`, jobs/runtime.py, issue 32):
the choices and their errors, the same frames from both runtimes (quarantine, order, ages
within tolerance), the scoring line naming the one that ran, and a whole scoring run with
TensorFlow unavailable. Real BlazeFace, generated photos, a small model exported on the fly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.blocked import BLOCK_TF
from tests.photos import blank_jpeg, scene_jpeg, write_bad_photos
from tests.shop import DAY, fill_shop

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("requested", "graph", "keras", "gpu", "expected"), [
    ("auto", True, True, False, "litert"),  # CPU node with a graph
    ("auto", True, False, False, "litert"),  # core install
    ("auto", True, True, True, "keras"),  # GPU node
    ("auto", False, True, False, "keras"),  # older file without a graph
    ("keras", True, True, False, "keras"),
    ("litert", True, True, True, "litert"),  # asked for on a GPU node: as asked
])
def test_choose_runtime(requested, graph, keras, gpu, expected):
    from jobs.runtime import choose_runtime

    assert choose_runtime(requested, graph, keras, gpu) == expected


def test_runtime_errors_name_the_way_out():
    from jobs.extras import MissingExtra
    from jobs.runtime import RuntimeUnavailable, choose_runtime

    with pytest.raises(MissingExtra, match=r"pip install 'ageseg\[train\]'"):
        choose_runtime("keras", True, False, False)
    with pytest.raises(RuntimeUnavailable, match="ageseg export"):
        choose_runtime("litert", False, True, False)
    with pytest.raises(MissingExtra, match=r"pip install 'ageseg\[train\]'"):
        choose_runtime("auto", False, False, False)
    with pytest.raises(ValueError, match="runtime must be one of"):
        choose_runtime("onnx", True, True, False)


def test_model_threads_take_the_cores_prep_leaves():
    from jobs.runtime import model_threads

    assert model_threads(2, 2) == 1 and model_threads(16, 4) == 12 and model_threads(1, 3) == 1


def _base(tmp_path: Path, db_url: str, model: Path) -> list[str]:
    return ["--db-url", db_url, "--photo-root", str(tmp_path / "photos"), "--model",
            str(model), "--output-root", str(tmp_path / "m"), "--restricted-root",
            str(tmp_path / "r"), "--lock-dir", str(tmp_path / "l"), "--min-cell", "3"]


def test_runtime_choice_is_checked(tmp_path, sqlite_url, tiny_model_path, monkeypatch):
    from click.testing import CliRunner

    from jobs.cli import cli

    base = _base(tmp_path, sqlite_url, tiny_model_path)
    result = CliRunner().invoke(cli, [*base, "--runtime", "onnx", "nightly", "--date",
                                      DAY.isoformat()])
    assert result.exit_code == 2 and "auto" in result.output and "litert" in result.output
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=12)
    monkeypatch.setenv("AGESEG_RUNTIME", "litert")  # the tiny model has no graph
    result = CliRunner().invoke(cli, [*base, "nightly", "--date", DAY.isoformat()])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and "ageseg export" in errors[0], result.output


@pytest.mark.slow
def test_both_runtimes_give_the_same_frames(tmp_path, litert_model_path):
    """Same rows, order, statuses and quarantine reasons; ages within a tenth of a year."""
    from models.blazeface import BlazeFaceDetector
    from models.litert import load_litert
    from models.persist import load_model
    from models.score import score_photos

    root = tmp_path / "photos"
    paths = list(write_bad_photos(root))
    for i in range(9):
        paths.append(str(scene_jpeg(root / f"day/{i}.jpg", seed=i).relative_to(root)))
    paths.append(str(blank_jpeg(root / "day/blank.jpg").relative_to(root)))
    photos = list(enumerate(paths, start=1))
    frames = {}
    for name, model in (("keras", load_model(litert_model_path, precision="float32")),
                        ("litert", load_litert(litert_model_path))):
        frames[name] = pd.concat(list(score_photos(photos, root, model, BlazeFaceDetector(),
                                                   7, challenge_age=25.0, prep_workers=2)),
                                 ignore_index=True)
    keras, lite = frames["keras"], frames["litert"]
    assert lite["photo_id"].tolist() == keras["photo_id"].tolist() == [p for p, _ in photos]
    same = ["photo_id", "face_count", "face_px", "status", "reason", "detail"]
    pd.testing.assert_frame_equal(lite[same], keras[same])
    assert {"ok", "quarantined"} <= set(keras["status"])
    aged = keras["age"].notna()
    assert aged.any() and lite["age"].notna().tolist() == aged.tolist()
    np.testing.assert_allclose(lite.loc[aged, "age"], keras.loc[aged, "age"], atol=0.1)
    np.testing.assert_allclose(lite.loc[aged, "p_under"], keras.loc[aged, "p_under"],
                               atol=0.01)



def _run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TF + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_nightly_scores_with_tensorflow_unavailable(tmp_path, sqlite_url, litert_model_path):
    """A whole night on the core install's terms: TensorFlow, Keras and mtcnn cannot be
    imported; `auto` picks LiteRT, the line says so, the tables are written."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=24)
    args = [*_base(tmp_path, sqlite_url, litert_model_path), "nightly", "--date",
            DAY.isoformat()]
    done = _run_blocked(f"""
from jobs.cli import cli
try:
    cli({args!r}, standalone_mode=False)
finally:
    bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
    print("imported:", bad)
""")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "imported: []" in done.stdout
    assert "LiteRT int8 weights" in done.stdout + done.stderr
    assert list((tmp_path / "m").rglob("*.parquet"))


@pytest.mark.slow
def test_tensorflow_commands_name_the_extra_without_it(tmp_path, sqlite_url, tiny_model_path):
    """exit 1 and one line naming the extra, for a command that needs TensorFlow."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=12)
    (tmp_path / "l.csv").write_text("file_name,real_age\n")
    cases = [
        [*_base(tmp_path, sqlite_url, tiny_model_path), "--runtime", "keras", "nightly",
         "--date", DAY.isoformat()],
        ["train", "--labels", str(tmp_path / "l.csv"), "--images", str(tmp_path),
         "--out", str(tmp_path / "x.ageseg")],
        ["export", str(tiny_model_path)],
    ]
    for args in cases:
        done = _run_blocked(f"""
from jobs.cli import cli
cli({args!r})
""")
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        assert done.returncode == 1, (args, done.stdout, done.stderr[-2000:])
        assert len(lines) == 1 and "pip install 'ageseg[train]'" in lines[0], (args, lines)
