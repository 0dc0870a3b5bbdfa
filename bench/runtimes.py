"""LiteRT vs Keras on a CPU (issue 32), in one run on the same checkout scenes:

- `score_photos` at the default prep workers with each runtime, rounds taking turns (so a
  busy moment on a shared machine hits both alike), best round of each: photos/s and the
  ratio (target >= 1.35x);
- the model alone per face on one core: Keras with TensorFlow on one intra-op and one
  inter-op thread (bench/prep_scaling.py's child), LiteRT on one thread, each in a fresh
  process with the cores it kept busy (CPU time / wall time);
- the whole process of a `ageseg nightly` over a 300-photo night (demo shop, BlazeFace)
  with --runtime keras and --runtime litert: wall time (target <= 0.5x) and peak RSS;
- peak RSS of a scoring process for a small and a large day with each runtime (flat from
  small to large; LiteRT lower than Keras).

Usage: python bench/runtimes.py [--model /root/.cache/ageseg/litert.ageseg] [--photos 400]
           [--night 300] [--small 100] [--large 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from prep_scaling import (  # noqa: E402
    BATCH,
    model_one_core,
    rows_for,
    run_child,
    scoring,
    write_scenes,
)

CANDIDATE = Path("/root/.cache/ageseg/litert.ageseg")

LITERT_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from prep_scaling import model_only
from models.litert import load_litert
model = load_litert({model!r}, threads=1); model.warm_up(32)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
rate = max(model_only(model), model_only(model))
assert "tensorflow" not in sys.modules
print(json.dumps({{"rate": rate, "cores": (cpu() - c0) / (time.perf_counter() - t0)}}))
"""

RSS_CHILD = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
from prep_scaling import rows_for, scoring
if {runtime!r} == "litert":
    from models.litert import load_litert
    model = load_litert({model!r}, threads={threads})
else:
    from models.persist import load_model
    model = load_model({model!r})
model.warm_up(32)
paths = sorted(p.name for p in Path({folder!r}).glob("s*.jpg"))
rate = scoring(rows_for(paths, {n}), Path({folder!r}), model, {workers})
# VmHWM, not ru_maxrss: that one keeps the high-water mark of the parent at fork across
# exec (the bench's own 1.3 GB with both models loaded); VmHWM belongs to this image.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
rss = int(hwm.split()[1]) / 1024
print(json.dumps({{"rate": rate, "rss": rss, "tensorflow": "tensorflow" in sys.modules}}))
"""


def peak_rss(runtime: str, model: Path, folder: Path, n: int, workers: int, threads: int
             ) -> dict:
    code = RSS_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), runtime=runtime,
                            model=str(model), folder=str(folder), n=n, workers=workers,
                            threads=threads)
    return run_child(code, f"{runtime} RSS run")


def night(model: Path, runtime: str, photos: int) -> tuple[float, float, float, str]:
    """(pipeline photos/s, process wall seconds, peak RSS MiB, the scoring line) of
    `ageseg nightly` over a demo day of `photos` photos."""
    from bench.scoring import DAY, build

    with tempfile.TemporaryDirectory(prefix="ageseg-runtimes-") as tmp:
        workdir = Path(tmp)
        build(workdir, photos, crops=False)
        args = [sys.executable, "-m", "jobs", "--db-url", f"sqlite:///{workdir / 'shop.db'}",
                "--photo-root", str(workdir / "photos"), "--output-root", str(workdir / "m"),
                "--restricted-root", str(workdir / "r"), "--lock-dir", str(workdir / "l"),
                "--model", str(model), "--runtime", runtime,
                "nightly", "--date", DAY.isoformat()]
        wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
                   "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
                   "sys.stderr.write(p.stdout + p.stderr); "
                   "print(time.perf_counter() - t, "
                   "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, p.returncode)")
        import subprocess

        out = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=ROOT,
                             capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
        wall, rss_kib, rc = out.stdout.strip().splitlines()[-1].split()
        if rc != "0":
            raise SystemExit(f"nightly --runtime {runtime} failed:\n{out.stderr[-3000:]}")
        line = next((x for x in out.stderr.splitlines() if "scored" in x), "")
        marker = json.loads(next((workdir / "m" / "_runs").glob("dt=*/SUCCESS.json"))
                            .read_text())
    return marker["photos"] / marker["seconds"], float(wall), int(rss_kib) / 1024, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None,
                        help=f"a model file with a LiteRT graph (default: {CANDIDATE} if "
                        "present, else the shipped model)")
    parser.add_argument("--photos", type=int, default=400, help="photos per timed round")
    parser.add_argument("--night", type=int, default=300)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", default="scoring,one-core,rss,night",
                        help="which parts to run, comma-separated")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    from jobs.runtime import model_threads
    from jobs.scoring_setup import available_cores
    from models.litert import has_graph
    from models.persist import DEFAULT_MODEL_PATH

    model_path = args.model or (CANDIDATE if CANDIDATE.is_file() else DEFAULT_MODEL_PATH)
    if not has_graph(model_path):
        raise SystemExit(f"{model_path} carries no LiteRT graph: ageseg export it first")
    cores = available_cores()
    workers, threads = cores, model_threads(cores, cores)
    began = time.time()
    print(f"{cores} cores, load average {os.getloadavg()[0]:.1f} at the start (the machine "
          f"is shared with other work: read the ratios, each from this one run); model "
          f"{model_path}")
    with tempfile.TemporaryDirectory(prefix="ageseg-runtimes-") as tmp:
        root = Path(tmp)
        rows = rows_for(write_scenes(root), args.photos)
        if "scoring" in parts:
            compare_scoring(model_path, rows, root, workers, threads, args.repeats)
        if "one-core" in parts:
            compare_one_core(model_path)
        if "rss" in parts:
            compare_rss(model_path, root, workers, threads, args.small, args.large)
    if "night" in parts:
        compare_nights(model_path, args.night)
    print(f"bench took {time.time() - began:.0f}s; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs (others' work included)")


def compare_scoring(model_path: Path, rows, root: Path, workers: int, threads: int,
                    repeats: int) -> None:
    from models.litert import load_litert
    from models.persist import load_model

    keras, lite = load_model(model_path), load_litert(model_path, threads=threads)
    keras.warm_up(BATCH)
    lite.warm_up(BATCH)
    rates: dict[str, float] = {"keras": 0.0, "litert": 0.0}
    for _ in range(repeats):
        for name, model in (("keras", keras), ("litert", lite)):
            rates[name] = max(rates[name], scoring(rows, root, model, workers))
    ratio = rates["litert"] / rates["keras"]
    print(f"score_photos, {len(rows)} photos, {workers} prep workers, batches of {BATCH}: "
          f"Keras ({keras.precision}) {rates['keras']:.1f} photos/s, LiteRT "
          f"({lite.precision}, {threads} thread(s)) {rates['litert']:.1f} photos/s: "
          f"{ratio:.2f}x (target >= 1.35x; best of {repeats} alternating rounds)", flush=True)


def compare_one_core(model_path: Path) -> None:
    k1 = model_one_core()
    l1 = run_child(LITERT_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"),
                                       model=str(model_path)), "LiteRT one-core run")
    # CPU time a face (wall time x cores busy) holds up on a shared machine, where a child
    # may get only part of its core; wall time alone does not.
    k_cpu, l_cpu = 1000 * k1["cores"] / k1["rate"], 1000 * l1["cores"] / l1["rate"]
    print(f"model alone on one core (mirror average: 2 passes a face): Keras "
          f"{1000 / k1['rate']:.2f} ms a face ({k1['cores']:.2f} cores busy, CPU "
          f"{k_cpu:.2f} ms), LiteRT {1000 / l1['rate']:.2f} ms a face ({l1['cores']:.2f} "
          f"cores busy, CPU {l_cpu:.2f} ms): {k_cpu / l_cpu:.2f}x less CPU a face",
          flush=True)


def compare_rss(model_path: Path, root: Path, workers: int, threads: int, small_n: int,
                large_n: int) -> None:
    rss = {}
    for runtime in ("keras", "litert"):
        rss[runtime] = [peak_rss(runtime, model_path, root, n, workers, threads)
                        for n in (small_n, large_n)]
        small, large = rss[runtime]
        print(f"peak RSS, {runtime}, {workers} workers: {small_n} photos "
              f"{small['rss']:.0f} MiB, {large_n} photos {large['rss']:.0f} MiB "
              f"({large['rss'] / small['rss']:.2f}x; flat is ~1.0x); TensorFlow "
              f"imported: {large['tensorflow']}", flush=True)
    print(f"LiteRT peak RSS on the large day: {rss['litert'][1]['rss']:.0f} MiB vs Keras "
          f"{rss['keras'][1]['rss']:.0f} MiB "
          f"({rss['litert'][1]['rss'] / rss['keras'][1]['rss']:.2f}x)", flush=True)


def compare_nights(model_path: Path, photos: int) -> None:
    nights = {runtime: night(model_path, runtime, photos) for runtime in ("keras", "litert")}
    for runtime, (rate, wall, peak, line) in nights.items():
        print(f"ageseg nightly, {photos}-photo demo night, --runtime {runtime}: process "
              f"{wall:.1f} s, pipeline {rate:.1f} photos/s, peak RSS {peak:.0f} MiB")
        print(f"    {line.strip()}")
    print(f"whole process LiteRT / Keras: {nights['litert'][1] / nights['keras'][1]:.2f}x "
          f"(target <= 0.5x)", flush=True)


if __name__ == "__main__":
    main()
