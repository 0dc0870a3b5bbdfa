"""`ageseg rescore` on a real local Ray (2 CPUs), against `nightly` run day by day: the same
rows in every table, days already done skipped, a driver killed with SIGKILL and rerun, a
Ray worker killed with SIGKILL mid-run. Small untrained models, generated photos, real
SQLite files and the local PostgreSQL. Without the `ray` extra the Ray tests skip."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import cli
from tests.ray_data import SlowScorer, fill_days

# One worker runs this file (`make test` distributes by `loadgroup`): its tests share one
# local Ray (`ray_session`), which other files' tests interleaved on the worker would
# otherwise make start and stop again.
pytestmark = pytest.mark.xdist_group("ray")

ROOT = Path(__file__).resolve().parents[1]
DAYS = [dt.date(2026, 11, 25), dt.date(2026, 11, 26), dt.date(2026, 11, 27)]
NO_PHOTOS = DAYS[2]  # receipts, but no photo rows: every shopper's age unknown
SPAN = ["--from", DAYS[0].isoformat(), "--to", DAYS[-1].isoformat()]


def _args(db_url: str, photos: Path, model: Path, out: Path) -> list[str]:
    return ["--db-url", db_url, "--photo-root", str(photos), "--model", str(model),
            "--output-root", str(out / "marketing"), "--restricted-root", str(out / "restricted"),
            "--lock-dir", str(out / "locks"), "--min-cell", "3", "--batch-size", "8"]


def _invoke(base: list[str], *args: str):
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def _outputs(out: Path) -> dict[str, pd.DataFrame]:
    """Every Parquet file under `out`, by relative path (tables × days)."""
    return {str(path.relative_to(out)): pd.read_parquet(path)
            for path in sorted(out.rglob("*.parquet"))}


def _markers(out: Path) -> dict[str, dict]:
    drop = {"run_id", "seconds"}
    return {path.parent.name: {k: v for k, v in json.loads(path.read_text()).items()
                               if k not in drop}
            for path in sorted((out / "marketing" / "_runs").glob("*/SUCCESS.json"))}


def assert_same_outputs(expected: Path, got: Path) -> None:
    """Row for row the same tables and the same markers (run ids and timings aside)."""
    want, have = _outputs(expected), _outputs(got)
    assert sorted(have) == sorted(want) and len(want) >= 4 * len(DAYS)
    for name, frame in want.items():
        pd.testing.assert_frame_equal(have[name], frame, obj=name)
    assert _markers(got) == _markers(expected)
    assert not [p for p in got.rglob(".*") if p.is_file()], "temporary files left behind"


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module (starting one costs seconds): 2 CPUs, no dashboard.
    Workers find the tests' own modules (a test's scorer) on PYTHONPATH."""
    ray = pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from jobs.ray_engine import connect

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)
    with connect(num_cpus=2):
        # This machine's network address is never used: everything stays on loopback.
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
        yield ray
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def shop(tmp_path_factory, tiny_model_path):
    """Three days on SQLite (bad photos on the first, none on the last) and the reference:
    `rescore` with the single-process engine, i.e. `run_nightly` for each day in turn."""
    root = tmp_path_factory.mktemp("ray_shop")
    db_url = f"sqlite:///{root / 'shop.db'}"
    fill_days(db_url, root / "photos", DAYS, no_photos=[NO_PHOTOS])
    reference = root / "reference"
    result = _invoke(_args(db_url, root / "photos", tiny_model_path, reference), "rescore",
                     *SPAN)
    assert result.exit_code == 0, result.output
    return db_url, root / "photos", reference


def test_ray_rescore_equals_nightly_day_by_day(ray_session, db_url, tmp_path, tiny_model_path):
    photos = tmp_path / "photos"
    fill_days(db_url, photos, DAYS, no_photos=[NO_PHOTOS])
    nightly, on_ray = tmp_path / "nightly", tmp_path / "ray"
    for day in DAYS:
        result = _invoke(_args(db_url, photos, tiny_model_path, nightly), "nightly", "--date",
                         day.isoformat())
        assert result.exit_code == 0, result.output
    engine = sa.create_engine(db_url)
    quarantine = "select photo_id, day, path, reason, detail from quarantine order by photo_id"
    after_nightly = pd.read_sql(quarantine, engine)
    assert len(after_nightly) > 5  # the first day's bad photos

    base = _args(db_url, photos, tiny_model_path, on_ray)
    result = _invoke(base, "rescore", *SPAN, "--engine", "ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    assert_same_outputs(nightly, on_ray)
    # Each day prints the scoring line nightly prints, saying it ran on Ray.
    lines = re.findall(r"scored ([\d,]+) photos in [\d.]+ s \([\d.]+ photos/s, \d+ prep "
                       r"actors?, model on CPU, (?:Keras float32|LiteRT int8 weights)\) on Ray, "
                       r"\d+ model actors?$",
                       result.output, re.MULTILINE)
    n_photos = pd.read_sql("select count(*) as n from checkout_photos", engine)["n"].iloc[0]
    assert len(lines) == len(DAYS), result.output
    assert sum(int(n.replace(",", "")) for n in lines) == n_photos
    assert lines[-1] == "0"  # NO_PHOTOS, the last day
    pd.testing.assert_frame_equal(pd.read_sql(quarantine, engine), after_nightly)
    runs = pd.read_sql("select job, day, status, model_version from runs where job = 'rescore'",
                       engine)
    assert len(runs) == len(DAYS) and set(runs["status"]) == {"ok"}
    assert set(runs["model_version"]) == {"test-tiny"}

    # Run again: every day is already done by this model with these settings.
    before = {p: p.stat().st_mtime_ns for p in on_ray.rglob("*.parquet")}
    again = _invoke(base, "rescore", *SPAN, "--engine", "ray")
    assert again.exit_code == 0, again.output
    assert again.output.count("skipped, already scored by model test-tiny") == len(DAYS)
    assert {p: p.stat().st_mtime_ns for p in on_ray.rglob("*.parquet")} == before
    engine.dispose()


@pytest.mark.slow
def test_force_and_other_settings_rescore_a_done_day(ray_session, shop, tmp_path,
                                                    tiny_model_path):
    db_url, photos, reference = shop
    out = tmp_path / "ray"
    base = _args(db_url, photos, tiny_model_path, out)
    first = _invoke(base, "rescore", *SPAN, "--engine", "ray", "--workers", "1")
    assert first.exit_code == 0, first.output
    assert_same_outputs(reference, out)
    marker = out / "marketing" / "_runs" / f"dt={DAYS[0]}" / "SUCCESS.json"
    run_id = json.loads(marker.read_text())["run_id"]

    day = ["--from", DAYS[0].isoformat(), "--to", DAYS[0].isoformat()]
    forced = _invoke(base, "rescore", *day, "--engine", "ray", "--force")
    assert forced.exit_code == 0 and "skipped" not in forced.output, forced.output
    assert json.loads(marker.read_text())["run_id"] != run_id  # written again
    assert_same_outputs(reference, out)

    # Another --min-cell makes other tables: not "already done".
    other = _invoke([*base, "--min-cell", "4"], "rescore", *day)
    assert other.exit_code == 0 and "skipped" not in other.output, other.output


def test_single_process_rescore_skips_done_days_too(shop, tmp_path, tiny_model_path):
    """Without Ray (no extra needed): a rerun finishes what is left, and only that."""
    db_url, photos, reference = shop
    out = tmp_path / "local"
    base = _args(db_url, photos, tiny_model_path, out)
    first = _invoke(base, "rescore", "--from", DAYS[0].isoformat(), "--to",
                    DAYS[1].isoformat())
    assert first.exit_code == 0, first.output
    rest = _invoke(base, "rescore", *SPAN)
    assert rest.exit_code == 0, rest.output
    assert rest.output.count("skipped") == 2 and f"{DAYS[2]}: 0 photos" in rest.output
    assert_same_outputs(reference, out)


@pytest.mark.slow
def test_driver_killed_then_rerun_finishes_the_range(ray_session, shop, tmp_path,
                                                     tiny_model_path):
    db_url, photos, reference = shop
    out = tmp_path / "ray"
    base = _args(db_url, photos, tiny_model_path, out)
    # One day per chunk: each day gets its own Ray dataset, so there is time between days.
    cmd = [sys.executable, "-m", "jobs", *base, "rescore", *SPAN, "--engine", "ray",
           "--workers", "1", "--chunk-photos", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    markers = out / "marketing" / "_runs"
    try:
        deadline = time.monotonic() + 240
        while not list(markers.glob("*/SUCCESS.json")) and time.monotonic() < deadline:
            assert driver.poll() is None, "the driver ended before it was killed"
            time.sleep(0.05)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        # The driver's local Ray (raylet, workers) shares its session: end it too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    done = sorted(p.parent.name for p in markers.glob("*/SUCCESS.json"))
    assert 1 <= len(done) < len(DAYS), done

    rerun = _invoke(base, "rescore", *SPAN, "--engine", "ray", "--workers", "2")
    assert rerun.exit_code == 0, rerun.output
    assert rerun.output.count("skipped") == len(done)
    assert_same_outputs(reference, out)
    engine = sa.create_engine(db_url)
    estimates = pd.read_parquet(out / "restricted" / "age_estimates")
    assert not estimates.duplicated(["receipt_id"]).any()
    killed = pd.read_sql("select status from runs where job = 'rescore' and status <> 'ok'",
                         engine)
    assert set(killed["status"]) <= {"running", "abandoned"}  # never "ok" for a killed run
    engine.dispose()


@pytest.mark.slow
def test_worker_killed_mid_run_is_restarted_and_nothing_lost(ray_session, shop, tmp_path,
                                                            tiny_model_path):
    from jobs.ray_engine import RayOptions, rescore_on_ray
    from jobs.settings import Settings
    from sql.engine import make_engine

    db_url, photos, reference = shop
    out = tmp_path / "ray"
    trace = out / "trace.txt"
    settings = Settings(db_url=db_url, photo_root=photos, model_path=tiny_model_path,
                        output_root=out / "marketing", restricted_root=out / "restricted",
                        min_cell=3, batch_size=8)
    config = settings.night()
    killed: list[int] = []
    finished = threading.Event()

    def kill_after_first_batch() -> None:
        while not finished.wait(0.05):
            lines = trace.read_text().split() if trace.exists() else []
            pids = [int(p) for what, p in zip(lines[::2], lines[1::2]) if what == "batch"]
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return

    killer = threading.Thread(target=kill_after_first_batch)
    killer.start()
    engine = make_engine(db_url)
    try:
        summaries = list(rescore_on_ray(settings, engine, DAYS, config,
                                        RayOptions(workers=1), force=True, scorer=SlowScorer))
    finally:
        finished.set()
        killer.join()
        engine.dispose()
    assert killed, "no worker was killed"
    starts = [line.split()[1] for line in trace.read_text().splitlines()
              if line.startswith("start")]
    assert len(set(starts)) >= 2, starts  # the killed worker came back as a new process
    assert [s.day for s in summaries] == DAYS
    assert_same_outputs(reference, out)


def test_a_running_nightly_keeps_a_ray_rescore_out(shop, tmp_path, tiny_model_path):
    """The same run lock as nightly: a rescore never writes a day while a nightly does."""
    pytest.importorskip("ray", reason="the `ray` extra is not installed")
    from jobs.errors import EXIT_LOCKED
    from jobs.lock import run_lock

    db_url, photos, _ = shop
    out = tmp_path / "ray"
    with run_lock(out / "locks", what="nightly 2026-11-27"):
        result = _invoke(_args(db_url, photos, tiny_model_path, out), "rescore", *SPAN,
                         "--engine", "ray")
    assert result.exit_code == EXIT_LOCKED and "nightly 2026-11-27" in result.output
    assert not (out / "marketing").exists()
