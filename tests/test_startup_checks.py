"""Wrong settings fail at start-up, before TensorFlow is imported, with one line that says
what to do, the documented exit code, and no file created; --dry-run runs the same checks.

Each command runs in a fresh Python process (TensorFlow, once imported by another test,
would stay in this one), through CliRunner there, so the child can report whether
TensorFlow was imported and whether an exception escaped as a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.shop import DAY, fill_shop

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, sys
from click.testing import CliRunner
from jobs.cli import cli
result = CliRunner().invoke(cli, json.loads(sys.argv[1]))
escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "tensorflow": "tensorflow" in sys.modules, "traceback": escaped}))
"""


def _cli(args: list[str], cwd: Path = ROOT, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AGESEG_")}
    environ.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", **env)
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _opts(tmp_path: Path, db_url: str, model: Path | str, photos: Path | None = None):
    return ["--db-url", db_url, "--photo-root", str(photos or tmp_path / "photos"),
            "--model", str(model), "--output-root", str(tmp_path / "marketing"),
            "--restricted-root", str(tmp_path / "restricted"),
            "--lock-dir", str(tmp_path / "locks"), "--min-cell", "3"]


def _assert_fast_failure(result: dict, code: int, *words: str) -> None:
    message = result["output"].strip().splitlines()[-1]
    assert result["exit_code"] == code, result["output"]
    assert message.startswith("Error: "), result["output"]
    for word in words:
        assert word in message, message
    assert not result["traceback"], result["output"]
    assert not result["tensorflow"], "TensorFlow was imported before the check failed"


def _files(root: Path) -> list[Path]:
    """Files written under an output root (the start-up check may create the empty folder)."""
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[str, Path]:
    """One filled day on SQLite, with its photos; tests only read it."""
    root = tmp_path_factory.mktemp("shop")
    url = f"sqlite:///{root / 'shop.db'}"
    fill_shop(url, root / "photos", n_receipts=26)
    return url, root / "photos"


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_bad_model_fails_before_tensorflow(shop, tmp_path, dry_run):
    url, photos = shop
    missing = _cli([*_opts(tmp_path, url, tmp_path / "nope.ageseg", photos),
                    "nightly", "--date", str(DAY), *dry_run])
    _assert_fast_failure(missing, 1, "model file not found", "nope.ageseg")
    junk = tmp_path / "junk.ageseg"
    junk.write_bytes(b"not a zip at all")
    damaged = _cli([*_opts(tmp_path, url, junk, photos), "rescore", "--from", str(DAY),
                    "--to", str(DAY), *dry_run])
    _assert_fast_failure(damaged, 1, "not an ageseg model file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.ageseg"]  # no lock, no tables


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_missing_sqlite_file_names_init_db_and_is_not_created(tmp_path, tiny_model_path,
                                                               dry_run):
    url = f"sqlite:///{tmp_path / 'nope.db'}"
    (tmp_path / "photos").mkdir()
    result = _cli([*_opts(tmp_path, url, tiny_model_path), "nightly", "--date", str(DAY),
                   *dry_run])
    _assert_fast_failure(result, 2, "nope.db does not exist", "ageseg init-db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]


def test_database_without_tables_names_init_db(tmp_path, tiny_model_path):
    import sqlite3

    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()  # a file, but nobody ran init-db on it
    (tmp_path / "photos").mkdir()
    result = _cli([*_opts(tmp_path, f"sqlite:///{db}", tiny_model_path), "nightly",
                   "--date", str(DAY)])
    _assert_fast_failure(result, 1, "lacks the tables", "runs", "ageseg init-db")
    assert not (tmp_path / "marketing").exists()


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_wrong_photo_root_exits_66_before_the_model_loads(shop, tmp_path, tiny_model_path,
                                                          dry_run):
    url, _ = shop
    wrong = tmp_path / "other-photos"
    wrong.mkdir()  # exists, but the day's photos are not under it
    result = _cli([*_opts(tmp_path, url, tiny_model_path, wrong), "nightly", "--date",
                   str(DAY), *dry_run])
    _assert_fast_failure(result, 66, "photos of 2026", str(wrong))
    assert _files(tmp_path / "marketing") == _files(tmp_path / "restricted") == []
    absent = _cli([*_opts(tmp_path, url, tiny_model_path, tmp_path / "no-such"), "nightly",
                   "--date", str(DAY), *dry_run])
    _assert_fast_failure(absent, 1, "no-such is not a folder")


def test_day_with_no_receipts_and_no_photos_is_refused(shop, tmp_path, tiny_model_path):
    """A day whose sales were never loaded must not pass for a quiet day (exit 65, nothing
    written); --allow-empty writes its empty tables."""
    url, photos = shop
    unloaded = str(DAY + dt.timedelta(days=1))
    result = _cli([*_opts(tmp_path, url, tiny_model_path, photos), "nightly", "--date",
                   unloaded])
    _assert_fast_failure(result, 65, unloaded, "no receipts and no photos", "--allow-empty")
    assert _files(tmp_path / "marketing") == _files(tmp_path / "restricted") == []
    dry = _cli([*_opts(tmp_path, url, tiny_model_path, photos), "nightly", "--date",
                unloaded, "--dry-run"])
    assert dry["exit_code"] == 65


def test_demo_defaults_outside_the_repository_say_so(tmp_path, tiny_model_path):
    """Run elsewhere, the var/demo defaults point nowhere: a configuration mistake, said as
    such (not "database unavailable", exit 69), and no var/ folder appears."""
    result = _cli(["--model", str(tiny_model_path), "nightly", "--date", str(DAY)],
                  cwd=tmp_path)
    _assert_fast_failure(result, 2, "var/demo/shop.db does not exist", "demo default",
                         str(tmp_path), "AGESEG_DB_URL")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_uses_the_group_model(tmp_path):
    """One way to pick the model: the group's --model (and AGESEG_MODEL) reach evaluate;
    evaluate's own --model, which used to win silently, is refused."""
    from tests.faces_data import write_labelled_faces

    csv = write_labelled_faces(tmp_path / "faces", n=8)
    args = ["evaluate", "--labels", str(csv), "--images", str(csv.parent / "images")]
    by_option = _cli(["--model", str(tmp_path / "nope.ageseg"), *args])
    assert by_option["exit_code"] == 1 and "nope.ageseg" in by_option["output"]
    by_env = _cli(args, AGESEG_MODEL=str(tmp_path / "env.ageseg"))
    assert by_env["exit_code"] == 1 and "env.ageseg" in by_env["output"]
    own = _cli([*args, "--model", str(tmp_path / "x.ageseg")])
    assert own["exit_code"] == 2 and "ageseg --model" in own["output"]
    assert not own["tensorflow"]
