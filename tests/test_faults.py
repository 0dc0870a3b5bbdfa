"""Faults injected into real runs of the nightly job: real processes, real files, the real
PostgreSQL. Each test breaks one thing the way it breaks at night and checks the job's
promise: a one-line reason with its exit code, no password anywhere, and the day's previous
outputs left exactly as they were unless a complete new set replaced them.

Starting the job costs a TensorFlow import and a model load, so tests whose fault must be
caught before that (database down, unwritable output, bad bins) prove it by not paying it,
and the days are small. The slow faults (20+ kill -9s, a 2,000-photo load) are in
bench/faults.py.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from analytics.parquet import OutputError, remove_marker, write_marker, write_partitions
from jobs.cli import cli
from tests import photos
from tests.shop import DAY, fill_shop

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Hunter2-s3cr3t"  # the password in the URLs below; it must show up nowhere
RESTRICTED, MARKETING = "age_estimates", "sales_by_age_group"
N_RECEIPTS = 24  # 20 photos of every bad kind (tests/photos.py) and 4 good ones


# --------------------------------------------------------------------------- helpers


def _env(db_url: str) -> dict[str, str]:
    """The database URL travels in AGESEG_DB_URL, as in the README's crontab line, so the
    password is not on the command line for `ps` to show."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
            "AGESEG_DB_URL": db_url}


def _cmd(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "jobs", "--photo-root", str(tmp_path / "photos"),
            "--model", str(model), "--output-root", str(tmp_path / "marketing"),
            "--restricted-root", str(tmp_path / "restricted"),
            "--lock-dir", str(tmp_path / "locks"), "--min-cell", "1", "--batch-size", "8",
            "--photos-are-faces", *extra, "nightly", "--date", DAY.isoformat()]


def _run(tmp_path: Path, db_url: str, model: Path, *extra: str,
         timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(_cmd(tmp_path, model, *extra), env=_env(db_url),
                          capture_output=True, text=True, timeout=timeout)


def _error_line(stderr: str) -> str:
    """The job's failure message: exactly one `Error:` line, last, and no traceback."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert [line for line in lines if line.startswith("Error:")] == lines[-1:], stderr[-3000:]
    return lines[-1]


def _previous_outputs(tmp_path: Path, restricted_root: Path | None = None) -> dict[Path, bytes]:
    """What an earlier night left: both tables and its marker. Returns {file: bytes}."""
    frame = pd.DataFrame({"receipt_id": [1, 2], "age": [30.5, 61.0]})
    meta = {"run_id": "previous-night", "day": DAY.isoformat()}
    write_partitions([(restricted_root or tmp_path / "restricted", RESTRICTED, frame),
                      (tmp_path / "marketing", MARKETING, frame.assign(revenue=9.5))], DAY, meta)
    write_marker(tmp_path / "marketing", DAY, meta)
    return _snapshot(tmp_path)


def _snapshot(*roots: Path) -> dict[Path, bytes]:
    """Every output file, hidden ones included, with its bytes."""
    out = {}
    for root in roots:
        for sub in ("restricted", "marketing"):
            folder = root / sub
            out.update({p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})
    return out


def _table(tmp_path: Path, root: str, table: str) -> pd.DataFrame:
    """A table the way an analyst reads it: DuckDB over the hive layout."""
    glob = f"{tmp_path / root / table}/*/*.parquet"
    return duckdb.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)").df()


def _runs(db_url: str) -> pd.DataFrame:
    engine = sa.create_engine(db_url)
    try:
        return pd.read_sql("select * from runs order by started_at", engine)
    finally:
        engine.dispose()


def _free_port() -> int:
    """A local port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_password(url: str) -> str:
    """`url` with SECRET as its password; the test server trusts local users, so the
    password is sent nowhere but must still be kept out of every message and file."""
    return sa.engine.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def _lock_note(tmp_path: Path) -> str:
    path = tmp_path / "locks" / "ageseg.lock"
    return path.read_text() if path.exists() else ""


# --------------------------------------------------------------------------- database


def test_database_down_fails_in_seconds_with_one_line_and_no_password(tmp_path,
                                                                       tiny_model_path):
    before = _previous_outputs(tmp_path)
    (tmp_path / "photos").mkdir()
    url = f"postgresql+psycopg://ageseg:{SECRET}@127.0.0.1:{_free_port()}/shop"
    started = time.monotonic()
    result = _run(tmp_path, url, tiny_model_path, "-v")
    seconds = time.monotonic() - started

    assert result.returncode == 69, result.stderr[-3000:]
    line = _error_line(result.stderr)
    assert line.startswith("Error: database unavailable (postgresql+psycopg://ageseg:***@")
    assert "after 4 attempts" in line and "refused" in line.lower()
    assert result.stderr.count("retrying in") == 3  # bounded, with back-off
    assert SECRET not in result.stdout + result.stderr + _lock_note(tmp_path)
    # Checked before the model load: no TensorFlow start, no scoring wasted on a dead night.
    assert "model " not in result.stderr and seconds < 30, seconds
    assert _snapshot(tmp_path) == before


class _Dropper:
    """Kills the job's PostgreSQL connection while it reads purchases.

    A second connection holds an ACCESS EXCLUSIVE lock on receipt_lines, so the job's
    purchase query waits, visibly, in pg_stat_activity; a thread then terminates that
    backend with pg_terminate_backend, as a failover or an admin would. After `times`
    terminations the lock is released and the next attempt reads normally.
    """

    def __init__(self, admin_url: str, db_url: str, times: int) -> None:
        self.database = sa.engine.make_url(db_url).database
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.engine = sa.create_engine(db_url)
        self.blocker = self.engine.connect()
        self.blocker.begin()
        self.blocker.exec_driver_sql("LOCK TABLE receipt_lines IN ACCESS EXCLUSIVE MODE")
        self.times, self.killed = times, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._drop, daemon=True)
        self.thread.start()

    def _drop(self) -> None:
        waiting = sa.text(
            "select pid from pg_stat_activity where datname = :db and state = 'active' "
            "and wait_event_type = 'Lock' and query ilike '%receipt_lines%' "
            "and pid <> pg_backend_pid()")
        with self.admin.connect() as conn:
            while not self.done.is_set() and self.killed < self.times:
                for pid in conn.execute(waiting, {"db": self.database}).scalars():
                    conn.execute(sa.text("select pg_terminate_backend(:pid)"), {"pid": pid})
                    self.killed += 1
                time.sleep(0.02)
        self.blocker.rollback()  # the database "comes back"

    def close(self) -> None:
        self.done.set()
        self.thread.join(10)
        self.blocker.close()
        self.engine.dispose()
        self.admin.dispose()


def test_connection_dropped_while_reading_purchases_is_retried(pg_server, pg_url, tmp_path,
                                                               tiny_model_path):
    fill_shop(pg_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    dropper = _Dropper(pg_server, pg_url, times=1)
    try:
        result = _run(tmp_path, pg_url, tiny_model_path)
    finally:
        dropper.close()

    assert dropper.killed == 1
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("database error (attempt 1/4), retrying in 0.5s: OperationalError: IO: Failed to "
            "prepare query: FATAL:  terminating connection due to administrator command"
            ) in result.stderr
    # The retried read is complete: every receipt of the day is in the marketing table.
    engine = sa.create_engine(pg_url)
    truth = pd.read_sql("select count(*) as receipts, sum(amount) as revenue "
                        "from receipt_lines", engine).iloc[0]
    engine.dispose()
    sales = _table(tmp_path, "marketing", MARKETING)
    assert sales["revenue"].sum() == pytest.approx(float(truth["revenue"]))
    assert len(_table(tmp_path, "restricted", RESTRICTED)) == N_RECEIPTS
    marker = json.loads(next((tmp_path / "marketing" / "_runs").rglob("SUCCESS.json")).read_text())
    assert marker["receipts"] == N_RECEIPTS
    assert _runs(pg_url)["status"].tolist() == ["ok"]


def test_connection_dropped_on_every_attempt_exits_69_and_keeps_outputs(
        pg_server, pg_url, tmp_path, tiny_model_path):
    fill_shop(pg_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    before = _previous_outputs(tmp_path)
    dropper = _Dropper(pg_server, pg_url, times=10)
    try:
        result = _run(tmp_path, pg_url, tiny_model_path)
    finally:
        dropper.close()

    assert result.returncode == 69, result.stderr[-3000:]
    assert dropper.killed == 4  # bounded: 4 attempts, then give up
    line = _error_line(result.stderr)
    assert "database unavailable" in line and "after 4 attempts: OperationalError" in line
    assert "terminating connection due to administrator command" in line
    assert _snapshot(tmp_path) == before  # nothing replaced, no temp file left
    runs = _runs(pg_url)
    assert runs["status"].tolist() == ["failed"]  # recorded, not stuck at "running"
    assert json.loads(runs["counts"][0]) == {"error": "DatabaseUnavailable"}


def test_database_without_tables_is_one_line_without_sql(tmp_path, tiny_model_path):
    """A permanent database error (here: `ageseg init-db` never ran) is not retried and
    comes out as the driver's first line, not SQLAlchemy's page of SQL and parameters."""
    import sqlite3

    (tmp_path / "photos").mkdir()
    sqlite3.connect(tmp_path / "empty.db").close()  # the file exists, its tables do not
    result = CliRunner().invoke(cli, [
        "--db-url", f"sqlite:///{tmp_path / 'empty.db'}", "--photo-root", str(tmp_path / "photos"),
        "--model", str(tiny_model_path), "--output-root", str(tmp_path / "marketing"),
        "--restricted-root", str(tmp_path / "restricted"), "--lock-dir", str(tmp_path / "locks"),
        "--photos-are-faces", "nightly", "--date", DAY.isoformat()])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: database sqlite:///{tmp_path / 'empty.db'} lacks the tables ")
    assert "runs" in lines[0] and "ageseg init-db" in lines[0] and "SELECT" not in lines[0]


# --------------------------------------------------------------------------- output roots


@contextlib.contextmanager
def _mount(kind: str, target: Path) -> Iterator[None]:
    """A read-only bind mount of `target` onto itself, or a 1 MiB tmpfs on it; skipped
    where the sandbox forbids mounting (it needs CAP_SYS_ADMIN)."""
    target.mkdir(parents=True, exist_ok=True)
    args = (["mount", "--bind", "-o", "ro", str(target), str(target)] if kind == "read_only"
            else ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        if kind == "read_only":
            with pytest.raises(OSError) as err:
                (target / "probe").write_bytes(b"x")
            assert err.value.errno == errno.EROFS
        yield
    finally:
        subprocess.run(["umount", str(target)], check=False, timeout=30)


def _fill(folder: Path) -> None:
    """Fill the file system under `folder` to the last byte (unbuffered: no write is left
    pending to fail again on close)."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)


def _empty_db(tmp_path: Path) -> str:
    from sql.engine import make_engine
    from sql.queries import create_schema

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    (tmp_path / "photos").mkdir()
    return url


@pytest.mark.parametrize("kind", ["a_file", "below_a_file", "read_only", "full"])
def test_unwritable_output_root_exits_73_before_any_work(kind, tmp_path, tiny_model_path):
    url = _empty_db(tmp_path)
    marketing = tmp_path / "marketing"
    if kind in ("a_file", "below_a_file"):
        _previous_outputs(tmp_path)
        (tmp_path / "blocker").write_text("a regular file where a folder should be\n")
        marketing = tmp_path / "blocker" / ("" if kind == "a_file" else "marketing")
        before = _snapshot(tmp_path)
        result = _run(tmp_path, url, tiny_model_path, "--output-root", str(marketing))
        after = _snapshot(tmp_path)
    elif kind == "read_only":
        _previous_outputs(tmp_path)
        with _mount("read_only", marketing):
            before = _snapshot(tmp_path)
            result = _run(tmp_path, url, tiny_model_path)
            after = _snapshot(tmp_path)
    else:
        with _mount("tmpfs", marketing):
            _previous_outputs(tmp_path)
            _fill(marketing)
            before = _snapshot(tmp_path)
            result = _run(tmp_path, url, tiny_model_path)
            after = _snapshot(tmp_path)

    assert result.returncode == 73, result.stderr[-3000:]
    reason = {"a_file": "it is a file, not a folder", "below_a_file": "Not a directory",
              "read_only": "Read-only file system", "full": "No space left on device"}[kind]
    assert _error_line(result.stderr) == f"Error: cannot write to {marketing}: {reason}"
    assert after == before  # previous outputs intact, no probe or temp file left
    assert "model " not in result.stderr  # refused before the model load
    assert _runs(url).empty  # no run started


def test_unusable_lock_folder_exits_73_in_one_line(tmp_path, tiny_model_path):
    url = _empty_db(tmp_path)
    (tmp_path / "locks").write_text("a regular file where the lock folder should be\n")
    result = _run(tmp_path, url, tiny_model_path)
    assert result.returncode == 73, result.stderr[-3000:]
    line = _error_line(result.stderr)
    assert line.startswith(f"Error: cannot create lock {tmp_path / 'locks' / 'ageseg.lock'}: ")
    assert not (tmp_path / "marketing").exists()


def test_disk_full_while_writing_exits_73_and_keeps_previous_outputs(tmp_path, sqlite_url,
                                                                     tiny_model_path):
    """The disk fills up while the job scores (after its start-up check passed)."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    restricted = tmp_path / "restricted"
    with _mount("tmpfs", restricted):
        before = _previous_outputs(tmp_path)
        proc = subprocess.Popen(_cmd(tmp_path, tiny_model_path, "-v"), env=_env(sqlite_url),
                                stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stderr = []
        for line in proc.stderr:  # with -v the job logs each scored batch
            stderr.append(line)
            if "scored 8 photos" in line:
                _fill(restricted)
                break
        out, rest = proc.communicate(timeout=300)
        stderr = "".join(stderr) + rest
        after = _snapshot(tmp_path)
        leftovers = sorted(p.name for p in restricted.rglob(".*"))

    assert proc.returncode == 73, stderr[-3000:]
    assert _error_line(stderr).endswith("No space left on device")
    after = {p: b for p, b in after.items() if p.name != "filler"}
    # Every table as it was. The marker may be gone (the pipeline may remove it before
    # writing) but never describes other files than those beside it.
    assert {p: b for p, b in after.items() if "_runs" not in p.parts} == {
        p: b for p, b in before.items() if "_runs" not in p.parts}
    assert all(before[p] == b for p, b in after.items() if "_runs" in p.parts)
    assert leftovers == []  # the half-written temp file was removed
    assert _runs(sqlite_url)["status"].tolist() == ["failed"]


def test_share_mounted_but_empty_exits_66_and_keeps_previous_outputs(tmp_path, sqlite_url,
                                                                   tiny_model_path):
    """The photo folder exists (a mount point) but holds none of the day's files: an outage,
    not 24 bad photos. Writing the day would turn every shopper's age into `unknown`."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    empty = tmp_path / "mountpoint"
    empty.mkdir()
    before = _previous_outputs(tmp_path)
    cmd = _cmd(tmp_path, tiny_model_path)
    cmd[cmd.index("--photo-root") + 1] = str(empty)
    proc = subprocess.run(cmd, env=_env(sqlite_url), capture_output=True, text=True,
                          timeout=300)

    assert proc.returncode == 66, proc.stderr[-3000:]
    assert "photo share mounted" in _error_line(proc.stderr)
    assert _snapshot(tmp_path) == before
    assert _runs(sqlite_url).empty  # refused at start-up, before the model load: no run

    # Mounted again: the same day runs and replaces the old outputs.
    proc = _run(tmp_path, sqlite_url, tiny_model_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _snapshot(tmp_path) != before


@pytest.mark.parametrize(("reasons", "refused"), [
    (["missing", "missing", "outside_root"], True),
    (["missing", "missing", ""], False),  # one photo read: bad photos, not an outage
    (["missing", "truncated"], False),  # a file was opened
    (["outside_root", "not_a_file"], False),  # nothing missing: the share is there
])
def test_check_photos_found_refuses_only_a_day_with_no_file_opened(reasons, refused):
    from analytics.pipeline import PhotosUnavailable, check_photos_found

    scores = pd.DataFrame({"status": ["quarantined" if r else "ok" for r in reasons],
                           "reason": reasons})
    if refused:
        with pytest.raises(PhotosUnavailable, match="3 photos"):
            check_photos_found(scores, DAY, Path("/mnt/photos"))
    else:
        check_photos_found(scores, DAY, Path("/mnt/photos"))


def test_write_partitions_is_all_or_nothing_when_the_second_table_hits_a_full_disk(tmp_path):
    """The staging API the pipeline writes with: no new restricted table beside an old
    marketing one when the marketing disk is full, and the old marker stays. No job process
    needed."""
    day_frame = pd.DataFrame({"receipt_id": range(5000), "age": np.linspace(1, 90, 5000)})
    with _mount("tmpfs", tmp_path / "marketing"):
        before = _previous_outputs(tmp_path)
        _fill(tmp_path / "marketing")
        with pytest.raises(OutputError, match="No space left on device"):
            write_partitions([(tmp_path / "restricted", RESTRICTED, day_frame),
                              (tmp_path / "marketing", MARKETING, day_frame)], DAY,
                             {"run_id": "new"},
                             before_commit=lambda: remove_marker(tmp_path / "marketing", DAY))
        after = _snapshot(tmp_path)
    assert {p: b for p, b in after.items() if p.name != "filler"} == before


def test_write_partitions_removes_the_marker_after_staging_before_renaming(tmp_path):
    before = _previous_outputs(tmp_path)
    seen = []

    def between() -> None:  # every new file is staged, no old one is replaced yet
        seen.append(sorted(p.name for p in _snapshot(tmp_path)))
        assert _snapshot(tmp_path).items() >= before.items()
        remove_marker(tmp_path / "marketing", DAY)

    frame = pd.DataFrame({"receipt_id": [7]})
    write_partitions([(tmp_path / "restricted", RESTRICTED, frame),
                      (tmp_path / "marketing", MARKETING, frame)], DAY, {"run_id": "new"},
                     before_commit=between)
    assert [name.startswith(".part-0.parquet.") for name in seen[0]].count(True) == 2
    after = _snapshot(tmp_path)
    assert sorted(p.name for p in after) == ["part-0.parquet", "part-0.parquet"]
    assert all(pd.read_parquet(p)["receipt_id"].tolist() == [7] for p in after)


def test_purge_removes_what_a_kill_left_half_deleted(tmp_path):
    """delete_partitions_before renames a day's folder to a hidden name, then removes it; a
    kill -9 in between leaves the hidden folder, which the next purge removes."""
    from analytics.parquet import delete_partitions_before, write_partition

    old_day = DAY.replace(year=DAY.year - 1)
    write_partition(tmp_path, "compliance", old_day, pd.DataFrame({"x": [1, 2]}), {"r": "1"})
    write_partition(tmp_path, "compliance", DAY, pd.DataFrame({"x": [3]}), {"r": "1"})
    orphan = tmp_path / "compliance" / f".dt={old_day}.0123abcd.deleting"
    (orphan / "part-0.parquet").parent.mkdir(parents=True)
    (orphan / "part-0.parquet").write_bytes(b"PAR1 half deleted")

    assert delete_partitions_before(tmp_path, "compliance", DAY) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "compliance").iterdir()) == [f"dt={DAY}"]


# --------------------------------------------------------------------------- overlap


def test_stale_lock_of_a_killed_run_blocks_nobody_and_of_two_runs_one_works(
        sqlite_url, tmp_path, tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    cmd, env = _cmd(tmp_path, tiny_model_path), _env(sqlite_url)

    # A run killed with SIGKILL while it holds the lock leaves the lock file behind.
    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while f"pid {killed.pid}," not in _lock_note(tmp_path) and time.monotonic() < deadline:
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert _lock_note(tmp_path).startswith(f"pid {killed.pid}, started ")

    # Two runs for the same day started together: exactly one works, the other exits 75.
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    results = {p.pid: (p.communicate(timeout=300), p.returncode) for p in (first, second)}
    codes = sorted(code for _, code in results.values())
    assert codes == [0, 75], {pid: (code, err[-2000:]) for pid, ((_, err), code) in
                              results.items()}
    winner = next(pid for pid, (_, code) in results.items() if code == 0)
    loser_err = next(err for (_, err), code in results.values() if code == 75)
    line = _error_line(loser_err)
    assert line.startswith("Error: another run holds ")
    assert f"(pid {winner}, started " in line and f"nightly {DAY}" in line
    assert len(_table(tmp_path, "restricted", RESTRICTED)) == N_RECEIPTS
    assert _runs(sqlite_url)["status"].tolist() == ["ok"]  # killed before it started one


def test_sigterm_unwinds_records_the_failure_and_keeps_outputs(sqlite_url, tmp_path,
                                                              tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    before = _previous_outputs(tmp_path)
    proc = subprocess.Popen(_cmd(tmp_path, tiny_model_path, "-v"), env=_env(sqlite_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stderr = []
    for line in proc.stderr:
        stderr.append(line)
        if "scored 8 photos" in line:
            proc.send_signal(signal.SIGTERM)  # systemd stop, cron timeout, `kill`
            break
    _, rest = proc.communicate(timeout=120)
    stderr = "".join(stderr) + rest

    assert proc.returncode == 143, stderr[-3000:]
    assert _error_line(stderr) == "Error: terminated by SIGTERM"
    assert _snapshot(tmp_path) == before
    runs = _runs(sqlite_url)
    assert runs["status"].tolist() == ["failed"]
    assert json.loads(runs["counts"][0]) == {"error": "Terminated"}


# --------------------------------------------------------------------------- configuration


HOSTILE_STORE = "O'Brien's \"Corner\"; DROP TABLE receipts; --"
HOSTILE_CATEGORY = "beer'); DELETE FROM runs WHERE ('1'='1"
ODD_CATEGORY = "snacks \\ 100% {0} %s ünïcødé\ttab"


def test_hostile_names_reach_parquet_as_data_and_the_password_goes_nowhere(
        pg_url, tmp_path, tiny_model_path):
    fill_shop(pg_url, tmp_path / "photos", n_receipts=N_RECEIPTS)
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("update stores set name = :n where store_id = 1"),
                     {"n": HOSTILE_STORE})
        for old, new in (("beer", HOSTILE_CATEGORY), ("snacks", ODD_CATEGORY)):
            conn.execute(sa.text("update products set category = :new where category = :old"),
                         {"new": new, "old": old})
    truth = pd.read_sql(
        "select s.name as store_name, p.category, sum(l.amount) as revenue "
        "from receipt_lines l join receipts r using (receipt_id) "
        "join stores s using (store_id) join products p using (product_id) "
        "group by s.name, p.category", engine)
    engine.dispose()
    url = _with_password(pg_url)

    result = _run(tmp_path, url, tiny_model_path, "-v")

    assert result.returncode == 0, result.stderr[-3000:]
    sales = _table(tmp_path, "marketing", MARKETING)
    got = sales.groupby(["store_name", "category"], as_index=False)["revenue"].sum()
    merged = truth.merge(got, on=["store_name", "category"], how="outer",
                         suffixes=("", "_parquet"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged
    np.testing.assert_allclose(merged["revenue_parquet"], merged["revenue"].astype(float))
    assert {HOSTILE_STORE} <= set(sales["store_name"])
    assert {HOSTILE_CATEGORY, ODD_CATEGORY} <= set(sales["category"])
    assert _runs(pg_url)["status"].tolist() == ["ok"]  # the runs table is still there

    # The password: not in output, logs, database records, Parquet (data or metadata),
    # the marker or the lock file.
    places = {"stdout": result.stdout, "stderr": result.stderr,
              "lock": _lock_note(tmp_path)}
    engine = sa.create_engine(pg_url)
    for table in ("runs", "quarantine"):
        places[table] = pd.read_sql(f"select * from {table}", engine).to_csv()
    engine.dispose()
    for path in sorted((tmp_path / "marketing").rglob("*")) + sorted(
            (tmp_path / "restricted").rglob("*")):
        if path.suffix == ".parquet":
            places[str(path)] = (repr(pq.read_schema(path).metadata)
                                 + pq.read_table(path).to_pandas().to_csv())
        elif path.is_file():
            places[str(path)] = path.read_text()
    assert len(places) >= 7
    assert [name for name, text in places.items() if SECRET in text] == []


@pytest.mark.parametrize(("bins", "why"), [("0-17,15-30,31+", "overlaps"),
                                          ("0-17,20-30,31+", "gap: 18 missing"),
                                          ("5-17,18+", "must start at 0")])
def test_bad_age_bins_exit_2_before_any_work(bins, why, tmp_path, tiny_model_path):
    db = tmp_path / "shop.db"  # SQLite creates the file on first connect: it must not exist
    result = CliRunner().invoke(cli, [
        "--db-url", f"sqlite:///{db}", "--photo-root", str(tmp_path / "photos"),
        "--model", str(tiny_model_path), "--output-root", str(tmp_path / "marketing"),
        "--restricted-root", str(tmp_path / "restricted"), "--lock-dir",
        str(tmp_path / "locks"), "--age-bins", bins, "nightly", "--date", DAY.isoformat()])
    assert result.exit_code == 2, result.output
    assert "--age-bins" in result.output and why in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- photos


def _huge_jpeg_header(path: Path, width: int = 20_000, height: int = 20_000) -> Path:
    """A real JPEG whose frame header says 20,000 x 20,000 (400 MP, 1.2 GB as RGB): a small
    JPEG with its SOF0 size fields rewritten, as a hostile or broken camera might send."""
    data = bytearray(photos._save(Image.new("RGB", (64, 48), (90, 120, 150)), path, "JPEG",
                                  quality=80).read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_every_bad_photo_is_quarantined_and_every_good_one_in_its_batch_scored(
        tmp_path, tiny_model_path, monkeypatch):
    """One stream of photos with every bad kind between good ones, batches of 8: each bad
    one gets its reason, each good one an age. Includes a file deleted after the photo rows
    were listed, a 20,000 x 20,000 PNG bomb and JPEG, and a decoder that crashes on one."""
    from models import photos as decoding
    from models.faces import WholeImageDetector
    from models.persist import load_model
    from models.score import score_photos

    root = tmp_path / "photos"
    expected = photos.write_bad_photos(root)
    expected["bomb_20k.png"] = "too_large"
    photos.bomb_png(root / "bomb_20k.png", 20_000, 20_000)
    expected["header_20k.jpg"] = "too_large"
    _huge_jpeg_header(root / "header_20k.jpg")
    expected["vanishes.jpg"] = "missing"
    photos.scene_jpeg(root / "vanishes.jpg", seed=5)
    expected["crashes_decoder.jpg"] = "unsupported"
    exif = Image.Exif()
    exif[0x010E] = "triggers-the-bug"  # ImageDescription
    photos._save(Image.new("RGB", (321, 241), (1, 2, 3)), root / "crashes_decoder.jpg", "JPEG",
                 exif=exif)
    real_transpose = decoding.ImageOps.exif_transpose

    def buggy_transpose(img, **kwargs):  # a PIL bug that one photo's EXIF triggers
        if img.getexif().get(0x010E) == "triggers-the-bug":
            raise KeyError(274)
        return real_transpose(img, **kwargs)

    monkeypatch.setattr(decoding.ImageOps, "exif_transpose", buggy_transpose)
    bad = [rel for rel, outcome in expected.items() if outcome not in photos.DECODABLE]
    good = [rel for rel, outcome in expected.items() if outcome in photos.DECODABLE]
    for i in range(len(bad) - len(good)):
        rel = f"good/{i}.jpg"
        photos.scene_jpeg(root / rel, seed=100 + i)
        good.append(rel)
    order = [rel for pair in zip(good, bad) for rel in pair]  # good, bad, good, bad, ...
    ids = {rel: i + 1 for i, rel in enumerate(order)}

    def listed() -> Iterator[tuple[int, str]]:
        """The rows as read from the database; one file disappears after the listing."""
        for rel in order:
            if rel == "vanishes.jpg":
                (root / rel).unlink()
            yield ids[rel], rel

    model = load_model(tiny_model_path)
    with contextlib.suppress(OSError):  # elsewhere the peak counts only growth past the old one
        Path("/proc/self/clear_refs").write_text("5")  # restart this process's peak RSS
    base = _peak_rss_mib()
    scores = pd.concat(score_photos(listed(), root, model, WholeImageDetector(), batch_size=8))
    grew = _peak_rss_mib() - base

    by_path = scores.assign(path=[order[i - 1] for i in scores["photo_id"]]).set_index("path")
    assert len(by_path) == len(order)
    for rel in bad:
        row = by_path.loc[rel]
        assert (row["status"], row["reason"]) == ("quarantined", expected[rel]), (rel, row)
    scored = by_path.loc[good]
    # aged; a generated photo may also be flagged low_quality (aged, camera outside the
    # handled ranges), never quarantined
    assert scored["status"].isin(["ok", "low_quality"]).all() and scored["age"].notna().all()
    assert len(scored) == len(good) and len(bad) == 13
    assert grew < 400, f"scoring grew peak memory by {grew:.0f} MiB"
