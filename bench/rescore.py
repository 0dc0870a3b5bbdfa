"""Re-scoring a range of days: the single-process engine next to Ray Data, and the driver's
own ceiling, measured in one run on this machine.

- 30 days x 100 checkout scenes (the shipped model, BlazeFace), `ageseg rescore` with the
  single-process engine, then `--engine ray` with 1 and 2 workers on a local Ray: photos/s
  end to end (process start to exit, start-up included) and steady (from the first day
  written to the last), per-worker rate, peak RSS of the driver and of each Ray worker;
- the driver's ceiling: the same driver (listing, grouping the scores by day, writing every
  table) with scoring stubbed out (a Ray actor that answers at once), at 100 and 2,000
  photos a day: how many photos/s one driver can absorb, hence how many workers it feeds;
- the driver's peak RSS for 10 and 30 such days: flat in the number of days or not.

Usage: python bench/rescore.py [--days 30] [--photos-per-day 100]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FIRST = dt.date(2026, 10, 1)
SCENES = 100  # distinct scene files; each day's photo rows point at them


class StubScorer:
    """Scoring stubbed out: every photo gets age 30 and one face, no file is read."""

    def __init__(self, settings):
        pass

    def __call__(self, batch):
        import pandas as pd

        from models.score import SCORE_DTYPES

        ids = [int(i) for ids in batch["photo_id"] for i in ids]
        days = [d for d, ids in zip(batch["day"], batch["photo_id"]) for _ in ids]
        n = len(ids)
        return pd.DataFrame({"photo_id": ids, "age": [30.0] * n, "p_under": [0.1] * n,
                             "face_count": [1] * n, "face_confidence": [0.99] * n,
                             "face_px": [150] * n, "status": ["ok"] * n, "reason": [""] * n,
                             "detail": [""] * n, "day": days}).astype(SCORE_DTYPES)


def build(workdir: Path, days: int, per_day: int, scenes: bool) -> None:
    """`days` days of receipts, `per_day` photos each (one per receipt)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from demo.purchases import generate_day
    from sql.engine import make_engine
    from sql.queries import create_schema, insert_frame

    photos = workdir / "photos"
    workdir.mkdir(parents=True, exist_ok=True)
    if scenes:
        from demo.scenes import available_demo_faces, render_checkout_scene

        faces = available_demo_faces()
        for i in range(SCENES):
            path = photos / f"scene_{i}.jpg"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                face = faces[i % len(faces)][0]
                image = render_checkout_scene(face, np.random.default_rng(i), face_px=150,
                                              second_face=False).image
                Image.fromarray(image).save(path, quality=90)
    engine = make_engine(f"sqlite:///{workdir / 'shop.db'}")
    create_schema(engine)
    rows = []
    for n in range(days):
        day = FIRST + dt.timedelta(days=n)
        shoppers = generate_day(engine, day, stores=4, receipts_per_store=per_day // 4,
                                shopper_ages=np.linspace(10, 80, per_day), seed=n)
        for i, r in enumerate(shoppers.sort_values("receipt_id").itertuples()):
            rows.append((len(rows) + 1, int(r.receipt_id), f"scene_{i % SCENES}.jpg", r.ts))
    insert_frame(engine, "checkout_photos",
                 pd.DataFrame(rows, columns=["photo_id", "receipt_id", "path", "taken_at"]))
    engine.dispose()


class Peaks:
    """Peak RSS (MiB) of the driver and of each of its Ray worker processes, sampled from
    /proc. The driver runs in a session of its own; only workers of that session count (not
    another Ray on the same machine)."""

    def __init__(self, driver_pid: int):
        self.driver_pid, self.driver, self.workers = driver_pid, 0.0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()[:60]
                    session = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1]
                                  .split()[3])
                except (OSError, ValueError, IndexError):
                    continue
                if session != self.driver_pid:
                    continue
                rss = next((int(line.split()[1]) / 1024 for line in status.splitlines()
                            if line.startswith("VmRSS:")), 0.0)
                if int(pid) == self.driver_pid:
                    self.driver = max(self.driver, rss)
                elif cmd.startswith(b"ray::MapWorker") or b"PhotoScorer" in cmd:
                    self.workers[pid] = max(self.workers.get(pid, 0.0), rss)
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
            "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _markers(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) | {"mtime": p.stat().st_mtime}
            for p in sorted((out / "marketing" / "_runs").glob("*/SUCCESS.json"))]


def rescore(workdir: Path, name: str, days: int, *extra: str) -> dict:
    """One `ageseg rescore` process over the range: photos/s and peak memory."""
    out = workdir / name
    last = FIRST + dt.timedelta(days=days - 1)
    cmd = [sys.executable, "-m", "jobs", "--db-url", f"sqlite:///{workdir / 'shop.db'}",
           "--photo-root", str(workdir / "photos"), "--output-root", str(out / "marketing"),
           "--restricted-root", str(out / "restricted"), "--lock-dir", str(out / "locks"),
           "rescore", "--from", FIRST.isoformat(), "--to", last.isoformat(), *extra]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    peaks = Peaks(proc.pid)
    _, err = proc.communicate()
    wall = time.monotonic() - started
    peaks.stop()
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{err[-3000:]}")
    markers = _markers(out)
    photos = sum(m["photos"] for m in markers)
    steady = sum(m["photos"] for m in markers[1:]) / (markers[-1]["mtime"] - markers[0]["mtime"])
    return {"photos": photos, "wall": wall, "rate": photos / wall, "steady": steady,
            "driver_mib": peaks.driver,
            "worker_mib": max(peaks.workers.values(), default=0.0),
            "workers_seen": len(peaks.workers)}


def ceiling(workdir: Path, days: int) -> dict:
    """The driver alone (StubScorer on Ray): photos/s and peak RSS of this child process."""
    code = f"""
import datetime as dt, json, resource, sys, time
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'bench')!r})
from rescore import FIRST, StubScorer
from jobs.ray_engine import RayOptions, connect, rescore_on_ray
from jobs.settings import Settings
from pathlib import Path
from sql.engine import make_engine
w = Path({str(workdir)!r}); out = w / "stub_{days}"
s = Settings(db_url=f"sqlite:///{{w / 'shop.db'}}", photo_root=w / "photos",
             output_root=out / "marketing", restricted_root=out / "restricted")
days = [FIRST + dt.timedelta(days=i) for i in range({days})]
engine = make_engine(s.db_url)
with connect(num_cpus=2):
    t = time.monotonic()
    n = sum(x.counts["photos"] for x in rescore_on_ray(
        s, engine, days, s.night(), RayOptions(workers=1),
        force=True, scorer=StubScorer, preparer=None))
    wall = time.monotonic() - t
print(json.dumps({{"photos": n, "wall": wall, "rate": n / wall,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "bench", env=_env(),
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"ceiling failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--photos-per-day", type=int, default=100)
    args = parser.parse_args()
    days, per_day = args.days, args.photos_per_day
    print(f"{days} days x {per_day} scenes, shipped model + BlazeFace, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ageseg-bench-rescore-") as tmp:
        work = Path(tmp) / "scenes"
        build(work, days, per_day, scenes=True)
        single = rescore(work, "single", days)
        one = rescore(work, "ray1", days, "--engine", "ray", "--workers", "1")
        two = rescore(work, "ray2", days, "--engine", "ray", "--workers", "2")
        for name, r, n in (("single process", single, 1), ("ray, 1 worker", one, 1),
                           ("ray, 2 workers", two, 2)):
            print(f"{name:15s} {r['photos']} photos in {r['wall']:.1f}s: {r['rate']:.1f} "
                  f"photos/s end to end, {r['steady']:.1f} steady ({r['steady'] / n:.1f} per "
                  f"worker); driver peak {r['driver_mib']:.0f} MiB"
                  + (f", worker peak {r['worker_mib']:.0f} MiB ({r['workers_seen']} seen)"
                     if r["workers_seen"] else ""), flush=True)
        print(f"ray 2 workers / single process: {two['rate'] / single['rate']:.2f}x end to "
              f"end, {two['steady'] / single['steady']:.2f}x steady")
        print(f"ray 2 workers / 1 worker: {two['steady'] / one['steady']:.2f}x steady")

        worker = one["steady"]
        stub = ceiling(work, days)
        print(f"driver ceiling (scoring stubbed), {per_day} photos/day: {stub['rate']:.0f} "
              f"photos/s = {stub['rate'] / worker:.1f}x one worker "
              f"({stub['wall'] / days:.2f}s per day written)", flush=True)
        short = ceiling(work, max(1, days // 3))
        print(f"driver peak RSS, {days // 3} vs {days} days: {short['rss']:.0f} vs "
              f"{stub['rss']:.0f} MiB ({stub['rss'] / short['rss']:.2f}x)", flush=True)
        big = Path(tmp) / "big"
        build(big, days, 2000, scenes=False)
        big_stub = ceiling(big, days)
        print(f"driver ceiling (scoring stubbed), 2000 photos/day: {big_stub['rate']:.0f} "
              f"photos/s = {big_stub['rate'] / worker:.1f}x one worker "
              f"({big_stub['wall'] / days:.2f}s per day written)")

if __name__ == "__main__":
    main()
