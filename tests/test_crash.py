"""A real process killed with SIGKILL mid-run never leaves a partial or missing partition,
never leaves a lock that blocks the next run, and the rerun gives the same rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
def test_kill_9_at_every_phase_loses_nothing(sqlite_url, tmp_path, litert_model_path):
    """Killed at each named phase (tests/kill_at.py: the process SIGKILLs itself there, so a
    busy machine cannot move the kill into another phase), the day's tables stay whole and
    the same, no partial file is visible, and the next run is not blocked."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=40)
    # The LiteRT model: the CPU node's own runtime, and no TensorFlow start-up per process.
    cmd, env = _nightly(tmp_path, sqlite_url, litert_model_path), _env()
    first = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    good = _tables(tmp_path)
    assert len(good["age_estimates"]) == 40  # one photo per receipt

    from tests.kill_at import PHASES

    for phase in PHASES:
        killed = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_at.py"), phase,
                                 *cmd[3:]], env=env, capture_output=True, text=True)
        assert killed.returncode == -signal.SIGKILL, (phase, killed.stderr[-2000:])
        now = _tables(tmp_path)  # always readable, never partial
        for table, frame in now.items():
            pd.testing.assert_frame_equal(frame, good[table], check_dtype=False)
        for root, table in TABLES:
            visible = [p.name for p in (tmp_path / root / table).rglob("*.parquet")]
            assert visible == ["part-0.parquet"], (phase, table)

    final = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]  # no stale lock
    assert "marked 1 earlier run(s)" in final.stderr  # the last kill's run, now interrupted
    for table, frame in _tables(tmp_path).items():
        pd.testing.assert_frame_equal(frame, good[table], check_dtype=False)
