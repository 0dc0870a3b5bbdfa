"""The nightly job's slow faults, on real processes: 20+ kill -9s at random points, and a big day.

Kill part (default). One day of a few hundred photos (and photos of every bad kind) in
PostgreSQL (SQLite with --sqlite). A clean single run gives the reference tables. Then, in a
fresh output folder, the job is started again and again and killed with SIGKILL, each time
at a random moment aimed at one phase in turn: start-up (imports, model load), scoring, the
join (purchases read, join, summaries), the Parquet write and the rename. Library code has
no test hooks, so aiming is done from outside: random delays after what the job shows, its
`-v` log lines ("scored N photos") and its hidden temp files appearing and completing. Where
each kill really landed is then read from the evidence (log lines seen, temp files left and
whether they hold a complete Parquet file, which part files were replaced). After every kill
a reader (DuckDB over the hive layout) must see each table either absent or exactly the
reference rows, and the next run must not be blocked. Finally the job runs to completion and
its tables are compared row for row with the clean run (run ids, which live only in file
metadata, excluded).

Load part (--load, PostgreSQL only): one day of 2,000 photos and 2 M receipts; reports wall
time, photos/s, peak RSS and RSS over the run.

Each fault prints one line: fault, injected, survived, rows lost (must be 0).

The model is a small untrained ResNet50 (32 px) built here with the card
{"version": "bench-tiny", "metrics": {"val_mae": 99.0}} unless --model is given: the faults do
not depend on what the ages are, and models/default.ageseg may not exist yet.

Usage: python bench/faults.py [--photos 300] [--kills 24] [--seed 5] [--sqlite] [--mtcnn]
       python bench/faults.py --load [--load-photos 2000] [--load-receipts 2000000]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import sqlalchemy as sa  # noqa: E402

DAY = dt.date(2026, 11, 28)
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
TABLES: list[tuple[str, str]] = []  # (root, table) of every table the clean run writes
PHASES = ("startup", "scoring", "join", "write", "rename")
PHASE_NAMES = {
    "startup": "kill -9 during start-up (imports, model load)",
    "scoring": "kill -9 during scoring",
    "join": "kill -9 after scoring, before writing (purchases, join, summaries)",
    "write": "kill -9 during the Parquet write",
    "rename": "kill -9 between a complete temp file and its rename",
    "finish": "kill -9 after the renames (quarantine, marker, run record)",
}


# --------------------------------------------------------------------------- set-up


def tiny_model(workdir: Path) -> Path:
    """A 32 px untrained ResNet50 whose card the job accepts (see the module docstring)."""
    from models.build import build_model
    from models.persist import save_model

    _, model = build_model(32)
    return save_model(model, workdir / "bench-tiny.ageseg",
                      {"version": "bench-tiny", "metrics": {"val_mae": 99.0}})


def database(use_sqlite: bool, workdir: Path) -> tuple[str, Callable[[], None]]:
    """A fresh database URL and how to drop it: PostgreSQL when reachable, else SQLite."""
    if not use_sqlite:
        admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT",
                                 connect_args={"connect_timeout": 3})
        try:
            name = f"ageseg_bench_{uuid.uuid4().hex[:10]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.engine.make_url(PG_ADMIN).set(database=name)

            def drop() -> None:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()

            return url.render_as_string(hide_password=False), drop
        except sa.exc.OperationalError:
            print("PostgreSQL unreachable at 127.0.0.1:5432: using SQLite", flush=True)
    return f"sqlite:///{workdir / 'shop.db'}", lambda: None


def fill_day(url: str, photo_root: Path, n_photos: int, seed: int, *,
             bad_photos: bool = True) -> int:
    """The day's purchases (demo generator) with one checkout photo per receipt, plus one
    photo of every bad kind (tests/photos.py) on no receipt. Returns the number of photos."""
    from demo.purchases import generate_day
    from demo.scenes import available_demo_faces, make_checkout_scene
    from sql.engine import make_engine
    from sql.queries import create_schema, insert_frame

    engine = make_engine(url)
    create_schema(engine)
    stores = 3 if n_photos < 1000 else 4
    faces = available_demo_faces()
    ages = np.random.default_rng(seed).uniform(8, 85, n_photos)
    shoppers = generate_day(engine, DAY, stores=stores,
                            receipts_per_store=math.ceil(n_photos / stores),
                            shopper_ages=ages, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for r in shoppers.sort_values("receipt_id").itertuples():
        rel = f"{DAY}/r{r.receipt_id}.jpg"
        path = photo_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_checkout_scene(faces[int(r.Index) % len(faces)][0], rng))
        rows.append((len(rows) + 1, int(r.receipt_id), rel, r.ts))
    if bad_photos:
        from tests.photos import write_bad_photos

        ts = shoppers["ts"].iloc[0]
        for rel in write_bad_photos(photo_root / "bad"):
            rows.append((len(rows) + 1, None, f"bad/{rel}" if not rel.startswith("/") else rel,
                         ts))
    insert_frame(engine, "checkout_photos",
                 pd.DataFrame(rows, columns=["photo_id", "receipt_id", "path", "taken_at"]))
    engine.dispose()
    return len(rows)


# --------------------------------------------------------------------------- one job process


class Job:
    """One `ageseg -v nightly` process; its stderr lines are kept with their arrival time."""

    def __init__(self, url: str, photo_root: Path, out: Path, model: Path, *,
                 mtcnn: bool, batch_size: int = 16) -> None:
        cmd = [sys.executable, "-m", "jobs", "-v", "--photo-root", str(photo_root),
               "--model", str(model), "--output-root", str(out / "marketing"),
               "--restricted-root", str(out / "restricted"), "--lock-dir", str(out / "locks"),
               "--min-cell", "3", "--batch-size", str(batch_size)]
        if not mtcnn:
            cmd.append("--photos-are-faces")
        cmd += ["nightly", "--date", DAY.isoformat()]
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
               "AGESEG_DB_URL": url}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.stdout = ""
        self._out: list[str] = []
        # Each pipe has exactly one reader for the whole run: communicate() in finish() used
        # to read stderr too, racing this thread, and the lines it won were lost to `lines`
        # (the clean run's phases then looked missing).
        self._readers = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_stdout, daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.append(line)

    def seen(self, text: str) -> float | None:
        """Seconds after start when a line containing `text` arrived, or None."""
        return next((t for t, line in list(self.lines) if text in line), None)

    def wait_until(self, done: Callable[[], bool], timeout: float = 600,
                   poll: float = 0.0005) -> bool:
        """Poll `done` until true (True) or the process ends or time runs out (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            if self.proc.poll() is not None:
                return done()
            time.sleep(poll)
        return False

    def sleep_alive(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(min(0.002, max(0.0, deadline - time.monotonic())))

    def kill(self) -> bool:
        """SIGKILL; False when the process had already ended by itself."""
        if self.proc.poll() is not None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        return True

    def finish(self, timeout: float = 3600) -> int:
        """Wait for the process and both readers; the pipes are read by the threads alone."""
        self.proc.wait(timeout=timeout)
        self.join_readers()
        return self.proc.returncode

    def join_readers(self) -> None:
        """After the process ended: wait until both pipes are drained to their end."""
        for reader in self._readers:
            reader.join(30)
        self.stdout = "".join(self._out)

    def run_id(self) -> str | None:
        for _, line in self.lines:
            if ": run " in line:
                return line.rsplit(": run ", 1)[1].strip()
        return None

    def stderr_tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


# --------------------------------------------------------------------------- what a reader sees


def discover_tables(out: Path) -> None:
    """Every table the clean run wrote for the day (the job's list grows; e.g. compliance)."""
    TABLES.clear()
    for root in ("restricted", "marketing"):
        for part in sorted((out / root).glob(f"*/dt={DAY}/part-0.parquet")):
            TABLES.append((root, part.parent.parent.name))


def part_dirs(out: Path) -> list[Path]:
    return [out / root / table / f"dt={DAY}" for root, table in TABLES]


def temps(out: Path) -> dict[Path, int]:
    """The job's staged files (hidden temp names of parts and markers) anywhere under the
    output roots, with their inode; not the start-up check's probe files."""
    found = {}
    for root in ("restricted", "marketing"):
        for folder, _dirs, files in os.walk(out / root):
            for name in files:
                if name.startswith((".part-", ".SUCCESS.json.")) and name.endswith(".tmp"):
                    path = Path(folder) / name
                    with contextlib.suppress(FileNotFoundError):
                        found[path] = path.stat().st_ino
    return found


def complete_parquet(path: Path) -> bool:
    """A temp file whose footer is written: the write is over, the rename has not happened."""
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            if f.read(4) != b"PAR1":
                return False
        pq.read_metadata(path)
        return True
    except Exception:  # vanished, shorter than 4 bytes, or torn: pyarrow raises several kinds
        return False


def inodes(out: Path) -> dict[str, int | None]:
    paths = {table: d / "part-0.parquet" for (_, table), d in zip(TABLES, part_dirs(out))}
    paths["marker"] = out / "marketing" / "_runs" / f"dt={DAY}" / "SUCCESS.json"
    return {k: (p.stat().st_ino if p.exists() else None) for k, p in paths.items()}


def read_tables(out: Path) -> dict[str, pd.DataFrame | None]:
    """Each table as an analyst reads it (DuckDB, hive layout); None when no file is there."""
    frames: dict[str, pd.DataFrame | None] = {}
    for root, table in TABLES:
        folder = out / root / table
        visible = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if not visible:
            frames[table] = None
            continue
        bad = [p for p in visible if p.name != "part-0.parquet"]
        if bad:
            raise AssertionError(f"a reader sees unexpected files: {bad}")
        glob = f"{folder}/*/*.parquet"
        frames[table] = duckdb.sql(
            f"select * from read_parquet('{glob}', hive_partitioning=true)").df()
    return frames


def row_counter(frame: pd.DataFrame) -> collections.Counter:
    """Rows as a multiset, nulls made comparable, so two tables compare row for row."""
    frame = frame[sorted(frame.columns)].astype(object)
    frame = frame.where(frame.notna(), "<null>")
    return collections.Counter(map(tuple, frame.itertuples(index=False)))


def rows_lost(reference: pd.DataFrame, got: pd.DataFrame | None) -> tuple[int, int]:
    """(reference rows the reader cannot see, rows it sees that the reference lacks)."""
    if got is None:
        return len(reference), 0
    ref, now = row_counter(reference), row_counter(got)
    return sum((ref - now).values()), sum((now - ref).values())


def show_difference(table: str, reference: pd.DataFrame, got: pd.DataFrame | None) -> None:
    """Print a few rows that differ, so a failure can be understood from the output."""
    if got is None:
        print(f"  {table}: no partition visible")
        return
    ref, now = row_counter(reference), row_counter(got)
    columns = sorted(reference.columns)
    for label, rows in (("only in the clean run", ref - now), ("only in this run", now - ref)):
        for row in list(rows)[:3]:
            print(f"  {table} {label}: {dict(zip(columns, row))}")


# --------------------------------------------------------------------------- the kill series


def aim_and_kill(job: Job, phase: str, timeline: dict[str, float], total: int,
                 out: Path, rng: random.Random) -> bool:
    """Kill `job` at a random moment meant to fall in `phase`; False if it finished first."""
    before = set(temps(out))

    def new_temp() -> list[Path]:
        return [p for p in temps(out) if p not in before]

    if phase == "startup":
        job.sleep_alive(rng.uniform(0.2, timeline["run"]))
    elif phase == "scoring":
        job.wait_until(lambda: job.seen(": run ") is not None, poll=0.005)
        job.sleep_alive(rng.uniform(0.0, timeline["scored"] - timeline["run"]))
    elif phase == "join":
        job.wait_until(lambda: job.seen(f"scored {total} photos") is not None, poll=0.002)
        job.sleep_alive(rng.uniform(0.0, max(0.01, timeline["first_temp"] - timeline["scored"])))
    elif phase == "write":
        job.wait_until(lambda: bool(new_temp()))
        job.sleep_alive(rng.uniform(0.0, 0.004))
    else:  # rename: as soon as a temp file holds a complete Parquet file
        job.wait_until(lambda: any(complete_parquet(p) for p in new_temp()), poll=0.0002)
    return job.kill()


def landed(job: Job, out: Path, before_temps: set[Path], before_inodes: dict, total: int) -> str:
    """Where the kill really fell, from the evidence it left."""
    now = inodes(out)
    changed = {k for k, v in now.items() if v != before_inodes[k] and v is not None}
    left = [p for p in temps(out) if p not in before_temps]
    if "marker" in changed or {table for _, table in TABLES} <= changed:
        return "finish"
    if left:
        return "rename" if any(complete_parquet(p) for p in left) else "write"
    if changed:
        return "write"  # between the two tables
    if job.seen(f"scored {total} photos") is not None:
        return "join"
    if job.seen(": run ") is not None:
        return "scoring"
    return "startup"


def reference_run(url: str, photo_root: Path, out: Path, model: Path, mtcnn: bool,
                  total: int) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """A clean single run: the tables every later state must equal, and when its phases
    began (seconds after start), watched from outside like the killed runs."""
    job = Job(url, photo_root, out, model, mtcnn=mtcnn)
    first_temp: list[float] = []

    def watch() -> None:
        while job.proc.poll() is None and not first_temp:
            if temps(out):
                first_temp.append(time.monotonic() - job.started)
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rc = job.finish()
    watcher.join(5)
    if rc != 0:
        raise SystemExit(f"the clean run failed ({rc}):\n{job.stderr_tail()}")
    timeline = {"run": job.seen(": run "), "scored": job.seen(f"scored {total} photos"),
                "first_temp": first_temp[0] if first_temp else job.seen(f"scored {total}"),
                "exit": time.monotonic() - job.started}
    if None in timeline.values():
        raise SystemExit(f"cannot read the clean run's phases from its log: {timeline}")
    discover_tables(out)
    tables = read_tables(out)
    return {k: v for k, v in tables.items() if v is not None}, timeline


def kill_series(args: argparse.Namespace, work: Path, model: Path) -> bool:
    url, drop = database(args.sqlite, work)
    try:
        photo_root = work / "photos"
        total = fill_day(url, photo_root, args.photos, args.seed)
        backend = url.split(":", 1)[0]
        print(f"day: {total} photos ({args.photos} scenes + every bad kind), "
              f"{'MTCNN' if args.mtcnn else '--photos-are-faces'}, database {backend}; "
              f"model: {model.name} (untrained 32 px ResNet50, card bench-tiny)"
              if model.name == "bench-tiny.ageseg" else f"model: {model}", flush=True)
        t0 = time.monotonic()
        reference, timeline = reference_run(url, photo_root, work / "reference", model,
                                            args.mtcnn, total)
        sizes = ", ".join(f"{k} {len(v)} rows" for k, v in reference.items())
        print(f"clean run: {timeline['exit']:.1f}s ({sizes}); phases after start: "
              + ", ".join(f"{k} {v:.2f}s" for k, v in timeline.items()), flush=True)

        out = work / "faulty"
        rng = random.Random(args.seed)
        stats = {p: {"injected": 0, "survived": 0, "lost": 0} for p in PHASE_NAMES}
        aimed = collections.Counter()
        late, blocked, partial_seen = 0, 0, 0
        for i in range(args.kills * 3):  # aims that come too late do not count as kills
            if sum(s["injected"] for s in stats.values()) >= args.kills:
                break
            phase = PHASES[i % len(PHASES)]
            before_temps, before_inodes = set(temps(out)), inodes(out)
            job = Job(url, photo_root, out, model, mtcnn=args.mtcnn)
            if not aim_and_kill(job, phase, timeline, total, out, rng):
                rc = job.finish()
                late += 1
                if rc == 75:
                    blocked += 1
                    print(f"  run blocked by a lock after a kill:\n{job.stderr_tail()}")
                elif rc != 0:
                    raise SystemExit(f"an unkilled run failed ({rc}):\n{job.stderr_tail()}")
                continue
            job.finish()
            aimed[phase] += 1
            where = landed(job, out, before_temps, before_inodes, total)
            tables = read_tables(out)  # what a reader sees between the kill and the rerun
            lost = complete = 0
            for table, frame in tables.items():
                if frame is not None:
                    missing, extra = rows_lost(reference[table], frame)
                    lost += missing + extra
                    complete += missing + extra == 0
            partial_seen += lost > 0
            stats[where]["injected"] += 1
            stats[where]["survived"] += lost == 0
            stats[where]["lost"] += lost
            visible = sum(frame is not None for frame in tables.values())
            print(f"  kill {sum(s['injected'] for s in stats.values()):2d}: aimed at {phase:<8}"
                  f" landed in {where:<8} at {time.monotonic() - job.started:5.2f}s; a reader "
                  f"sees {visible}/{len(tables)} tables, {complete} complete, {lost} rows off",
                  flush=True)

        final = Job(url, photo_root, out, model, mtcnn=args.mtcnn)
        rc = final.finish()
        if rc != 0:
            raise SystemExit(f"the final run failed ({rc}):\n{final.stderr_tail()}")
        tables = read_tables(out)
        final_lost = sum(sum(rows_lost(reference[t], tables[t])) for t in reference)
        for t in reference:
            show_difference(t, reference[t], tables[t])
        run_ids = {pq.read_schema(d / "part-0.parquet").metadata[b"ageseg"] for d in part_dirs(out)}
        same_run = all(final.run_id() in raw.decode() for raw in run_ids)
        leftovers = list(temps(out))
        engine = sa.create_engine(url)
        statuses = pd.read_sql("select status from runs", engine)["status"].value_counts()
        engine.dispose()
        kills = sum(s["injected"] for s in stats.values())

        print(f"{kills} kills in {time.monotonic() - t0:.0f}s ({late} aims came after the run had "
              f"finished and were not counted); aimed: "
              + ", ".join(f"{p} {aimed[p]}" for p in PHASES), flush=True)
        print(f"runs table: {({k: int(v) for k, v in statuses.items()})} "
              "(a SIGKILLed run cannot record its end)")
        print()
        print("fault, injected, survived, rows lost")
        for phase, name in PHASE_NAMES.items():
            s = stats[phase]
            print(f"{name}, {s['injected']}, {s['survived']}, {s['lost']}")
        print(f"stale lock after kill -9 (next run blocked), {kills}, {kills - blocked}, 0")
        survived = int(rc == 0 and final_lost == 0 and same_run and not leftovers)
        print(f"rerun to completion after {kills} kills vs clean run (row for row), 1, "
              f"{survived}, {final_lost}")
        return (partial_seen == 0 and blocked == 0 and survived == 1 and kills >= args.kills)
    finally:
        drop()


# --------------------------------------------------------------------------- load


def add_receipts(url: str, n: int, seed: int) -> int:
    """Add `n` photo-less receipts with 1-4 lines each to the day, generated inside
    PostgreSQL (generate_series): millions of rows in seconds, no client memory."""
    from demo.purchases import CASHIERS_PER_STORE

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        base = conn.execute(sa.text("select max(receipt_id) from receipts")).scalar() + 1
        stores = conn.execute(sa.text("select count(*) from stores")).scalar()
        start = dt.datetime.combine(DAY, dt.time(7))
        params = {"base": base, "n": n, "stores": stores, "cashiers": CASHIERS_PER_STORE,
                  "start": start, "seed": seed}
        conn.execute(sa.text("""
            insert into receipts (receipt_id, store_id, cashier_id, ts, id_checked)
            select :base + g, 1 + g % :stores, (1 + g % :stores) * 100 + 1 + (g / :stores)
                   % :cashiers, :start + make_interval(secs => (g * 7919 + :seed) % 54000), null
            from generate_series(0::bigint, :n - 1) g"""), params)
        conn.execute(sa.text("""
            with p as (select array_agg(product_id order by product_id) ids from products)
            insert into receipt_lines (receipt_id, line_no, product_id, quantity, amount)
            select :base + g, k,
                   p.ids[1 + (g * 31 + k * 17) % cardinality(p.ids)],
                   1 + (g + k) % 3, round(((g * 13 + k * 7) % 900 + 49) / 100.0, 2)
            from p, generate_series(0::bigint, :n - 1) g,
                 generate_series(1, 1 + g % 4) k"""), params)
        lines = conn.execute(sa.text("select count(*) from receipt_lines")).scalar()
    engine.dispose()
    return lines


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def load(args: argparse.Namespace, work: Path, model: Path) -> bool:
    url, drop = database(False, work)
    if not url.startswith("postgresql"):
        print("load: needs PostgreSQL")
        return False
    try:
        t = time.monotonic()
        photo_root = work / "photos"
        photos = fill_day(url, photo_root, args.load_photos, args.seed, bad_photos=False)
        lines = add_receipts(url, args.load_receipts - photos, args.seed)  # one per photo
        print(f"load day: {photos} photos, {args.load_receipts:,} receipts, {lines:,} lines "
              f"(built in {time.monotonic() - t:.0f}s); "
              f"{'MTCNN' if args.mtcnn else '--photos-are-faces'}", flush=True)
        job = Job(url, photo_root, work / "out", model, mtcnn=args.mtcnn, batch_size=32)
        samples: list[tuple[float, float]] = []
        usage: list = []

        def sample() -> None:
            while job.proc.poll() is None:
                value = rss_mib(job.proc.pid)
                if value is not None:
                    samples.append((time.monotonic() - job.started, value))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, rusage = os.wait4(job.proc.pid, 0)  # this child's own peak, not ours
        usage.append(rusage)
        job.proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - job.started
        sampler.join(5)
        job.join_readers()
        if job.proc.returncode != 0:
            print(f"load: the job failed ({job.proc.returncode}):\n{job.stderr_tail()}")
            return False
        first, last = job.seen(": run "), job.seen(f"scored {photos} photos")
        scoring = [(t, m) for t, m in samples if first <= t <= last]
        after = [m for t, m in samples if t > last]
        q = [scoring[int(f * (len(scoring) - 1))][1] for f in (0.1, 0.5, 0.9)] if scoring else []
        peak = usage[0].ru_maxrss / 1024
        print(f"load: wall {wall:.0f}s; scoring {last - first:.0f}s = "
              f"{photos / (last - first):.1f} photos/s ({photos / wall:.1f} photos/s over the "
              f"whole process); peak RSS {peak:.0f} MiB")
        if q:
            print(f"load: RSS while scoring at 10/50/90% {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f} MiB "
                  f"(growth {q[2] - q[0]:+.0f} MiB); after scoring (purchases read, join, "
                  f"write) up to {max(after, default=float('nan')):.0f} MiB")
        flat = bool(q) and q[2] - q[0] < 200
        marker = json.loads(next((work / "out" / "marketing" / "_runs").rglob("SUCCESS.json"))
                            .read_text())
        lost = args.load_receipts - int(marker.get("receipts", 0))  # every receipt counted
        print(f"load ({photos:,} photos, {args.load_receipts:,} receipts) with flat memory, 1, "
              f"{int(flat and lost == 0)}, {lost}")
        return flat and lost == 0
    finally:
        drop()


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300, help="scenes in the kill day")
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--mtcnn", action="store_true",
                        help="detect faces in scenes (slower) instead of --photos-are-faces")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--load", action="store_true", help="run the (long) load part only")
    parser.add_argument("--load-photos", type=int, default=2000)
    parser.add_argument("--load-receipts", type=int, default=2_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ageseg-faults-"))
    started = time.monotonic()
    try:
        model = args.model or tiny_model(work)
        ok = load(args, work, model) if args.load else kill_series(args, work, model)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores; bench took {time.monotonic() - started:.0f}s; "
          f"{'all faults survived, 0 rows lost' if ok else 'FAILED'}")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
