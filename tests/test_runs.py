"""A driver killed between its run marker and its `ok` does not stay `running` for ever: the
next run under the same lock marks it `interrupted`, and `ageseg runs` shows it so, while a
run under another lock (another machine) is left alone."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time

import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import cli
from sql.queries import start_run
from tests.shop import DAY, fill_shop
from tests.test_faults import _env


def _statuses(db_url: str) -> dict[str, str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(sa.text("select run_id, status from runs")).all())
    finally:
        engine.dispose()


def test_killed_driver_is_marked_interrupted_by_the_next_run(sqlite_url, tmp_path,
                                                            tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=60)
    opts = ["--photo-root", str(tmp_path / "photos"), "--model", str(tiny_model_path),
            "--output-root", str(tmp_path / "marketing"),
            "--restricted-root", str(tmp_path / "restricted"),
            "--lock-dir", str(tmp_path / "locks"), "--min-cell", "1", "--batch-size", "2"]
    cmd = [sys.executable, "-m", "jobs", *opts, "nightly", "--date", DAY.isoformat()]
    killed = subprocess.Popen(cmd, env=_env(sqlite_url), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while "running" not in _statuses_or_none(sqlite_url).values():
        assert killed.poll() is None, "the run ended before its marker was seen"
        assert time.monotonic() < deadline, "no run marker within 2 minutes"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    (dead,) = _statuses(sqlite_url)
    assert _statuses(sqlite_url) == {dead: "running"}

    # A run of another machine, alive as far as anyone here can tell.
    engine = sa.create_engine(sqlite_url)
    start_run(engine, "elsewhere", "rescore", DAY - dt.timedelta(days=7), "v0",
              "other-host:/run/ageseg/ageseg.lock")
    engine.dispose()

    result = CliRunner().invoke(cli, ["--db-url", sqlite_url, *opts, "nightly", "--date",
                                      DAY.isoformat()], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"interrupted (killed before they finished): {dead}" in result.output
    statuses = _statuses(sqlite_url)
    assert statuses.pop(dead) == "interrupted" and statuses.pop("elsewhere") == "running"
    assert list(statuses.values()) == ["ok"]

    listed = CliRunner().invoke(cli, ["--db-url", sqlite_url, "runs"]).output.splitlines()
    assert "interrupted" in next(line for line in listed if dead in line)
    assert "running" in next(line for line in listed if "elsewhere" in line)


def _statuses_or_none(db_url: str) -> dict[str, str]:
    """Statuses, or none while the database is busy or the table still missing."""
    try:
        return _statuses(db_url)
    except sa.exc.OperationalError:
        return {}


def test_every_database_command_exits_69_for_an_unreachable_database(monkeypatch):
    """One rule (jobs/errors.py database_errors): `init-db` exits 69 like `runs`, not 1."""
    monkeypatch.setattr("sql.engine.time.sleep", lambda _seconds: None)  # the back-off
    url = "postgresql+psycopg://shop:s3cret-pw@127.0.0.1:1/shop"
    for command in (["init-db"], ["runs"]):
        result = CliRunner().invoke(cli, ["--db-url", url, *command])
        assert result.exit_code == 69, (command, result.output)
        assert "database unavailable (postgresql+psycopg://shop:***@127.0.0.1:1/shop)" in \
            result.output, result.output
        assert "s3cret-pw" not in result.output
