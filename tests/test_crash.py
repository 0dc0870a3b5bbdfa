"""A real process killed with SIGKILL mid-run never leaves a partial or missing partition,
never leaves a lock that blocks the next run, and the rerun gives the same rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.shop import DAY, fill_shop

ROOT = Path(__file__).resolve().parents[1]
TABLES = (("marketing", "sales_by_age_group"), ("restricted", "age_estimates"))


def _nightly(tmp_path: Path, db_url: str, model: Path) -> list[str]:
    return [sys.executable, "-m", "jobs", "--db-url", db_url,
            "--photo-root", str(tmp_path / "photos"), "--model", str(model),
            "--output-root", str(tmp_path / "marketing"),
            "--restricted-root", str(tmp_path / "restricted"),
            "--lock-dir", str(tmp_path / "locks"), "--min-cell", "3", "--batch-size", "8",
            "nightly", "--date", DAY.isoformat()]


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def _tables(tmp_path: Path) -> dict[str, pd.DataFrame]:
    """Read each table the way an analyst would (DuckDB over the hive layout)."""
    out = {}
    for root, table in TABLES:
        glob = f"{tmp_path / root / table}/*/*.parquet"
        frame = duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)").df()
        out[table] = frame.sort_values(list(frame.columns[:3])).reset_index(drop=True)
    return out


@pytest.mark.slow
def test_kill_9_at_random_points_loses_nothing(sqlite_url, tmp_path, tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=40)
    cmd, env = _nightly(tmp_path, sqlite_url, tiny_model_path), _env()
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    good = _tables(tmp_path)
    assert len(good["age_estimates"]) == 40  # one photo per receipt

    # Kill at spread-out moments: start-up, model load, scoring, writing.
    rng_delays = [0.5, 3.0, 6.0, 9.0, 12.0]
    for delay in rng_delays:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _tables(tmp_path)  # always readable, never partial
        for table, frame in now.items():
            pd.testing.assert_frame_equal(frame, good[table], check_dtype=False)
        for root, table in TABLES:
            visible = [p.name for p in (tmp_path / root / table).rglob("*.parquet")]
            assert visible == ["part-0.parquet"], table

    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]  # no stale lock
    for table, frame in _tables(tmp_path).items():
        pd.testing.assert_frame_equal(frame, good[table], check_dtype=False)
