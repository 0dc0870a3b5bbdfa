"""Does photo preparation scale with the cores, and does scoring follow? All on the same
checkout scenes, in one run:

- prep only (read, decode, letterbox, BlazeFace, crop: `prepare_batch`) on 1, 2, ... C
  threads, each with its own detector: photos/s and the ratio to one thread;
- `score_photos` with a zero-cost stand-in model (what a GPU looks like to the CPU side: the
  GPU node's ceiling) at 1 prep worker and at C;
- `score_photos` with the shipped model at 1 prep worker and at the default (the cores this
  process may use), next to the ideal: C cores, each doing one photo's prep and one face's
  model in turn, give C / (prep_1 + model_1), with both costs measured on one core (prep on
  one thread; the model in a child process whose TensorFlow runs one intra-op and
  one inter-op thread, its CPU time / wall time printed to show it kept one core busy). The
  model's wall time on all cores is also printed: it is what the model costs while nothing
  else runs, not what a core costs, and an "ideal" built from it is above what C cores can
  do when prep takes the same cores;
- peak RSS of the whole scoring process (real model, default workers) for a small and a
  large day: flat means memory does not grow with the day.

Targets on a 2-core machine: stand-in at C >= 1.8x at 1; real model at the default >= 1.25x
at 1 and >= 85 % of the ideal; RSS flat. The machine may be shared: absolute figures are
noisy, so the ratios are what to read, and each is the best of --repeats runs.

Usage: python bench/prep_scaling.py [--photos 400] [--small 100] [--large 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from jobs import quiet_tf  # noqa: E402  (before anything imports TensorFlow)

quiet_tf.install()
DISTINCT = 200  # scene files; longer days point their photo rows at them again
BATCH = 32


def write_scenes(folder: Path, n: int = DISTINCT) -> list[str]:
    """`n` checkout scenes with one of the demo's public-domain faces, as JPEG files."""
    from PIL import Image

    from demo.scenes import available_demo_faces, render_checkout_scene

    faces = available_demo_faces()
    paths = []
    for i in range(n):
        rng = np.random.default_rng(i)
        scene = render_checkout_scene(faces[i % len(faces)][0], rng).image
        rel = f"s{i:04d}.jpg"
        Image.fromarray(scene).save(folder / rel, quality=90)
        paths.append(rel)
    return paths


def rows_for(paths: list[str], n: int) -> list[tuple[int, str]]:
    return [(i, paths[i % len(paths)]) for i in range(n)]


class StandIn:
    """A model that costs nothing: the shipped model's card and size, zero ages."""

    device, precision = "none", "stand-in"

    def __init__(self, card: dict, image_size: int):
        self.card, self.image_size = card, image_size

    def predict_all(self, faces, batch_size=32):
        n = len(faces)
        return np.zeros(n, np.float32), np.full((n, 101), 1 / 101, np.float32), np.zeros(n)

    def p_under(self, probs, head, age):
        return head


def prep_only(rows, root: Path, card: dict, size: int, threads: int) -> float:
    """Photos/s of `prepare_batch` alone on `threads` threads, a BlazeFace each."""
    import threading

    from models.blazeface import BlazeFaceDetector
    from models.crop import contract_for
    from models.score import _read, prepare_batch

    local = threading.local()
    contract = contract_for(card, "blazeface")

    def work(chunk):
        if not hasattr(local, "detector"):
            local.detector = BlazeFaceDetector()
            local.detector.warm_up()
        return prepare_batch([(pid, _read(root, rel)) for pid, rel in chunk], local.detector,
                             size, contract)

    chunks = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, chunks[:threads]))  # warm each thread's detector
        started = time.perf_counter()
        list(pool.map(work, chunks))
    return len(rows) / (time.perf_counter() - started)


def scoring(rows, root: Path, model, workers: int) -> float:
    """Photos/s of `score_photos` end to end (model already warm)."""
    from models.blazeface import BlazeFaceDetector
    from models.score import score_photos

    detector = BlazeFaceDetector()
    detector.warm_up()
    started = time.perf_counter()
    n = sum(len(f) for f in score_photos(rows, root, model, detector, BATCH, 25.0,
                                         prep_workers=workers))
    return n / (time.perf_counter() - started)


def model_only(model, n: int = 512) -> float:
    """Faces/s of the model alone on in-memory faces, as the job calls it."""
    x = np.random.default_rng(0).integers(0, 255, (n, model.image_size, model.image_size, 3),
                                          dtype=np.uint8)
    started = time.perf_counter()
    model.predict_faces(x, batch_size=BATCH)
    return n / (time.perf_counter() - started)


MODEL_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
from prep_scaling import model_only
from models.persist import load_model
model = load_model(None); model.warm_up(32)
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
rate = max(model_only(model), model_only(model))
print(json.dumps({{"rate": rate, "cores": (cpu() - c0) / (time.perf_counter() - t0)}}))
"""


def model_one_core() -> dict:
    """Faces/s of the model alone with TensorFlow on one intra-op and one inter-op thread
    (intra-op alone is not enough: the inter-op pool still runs independent ops beside it,
    1.13 cores busy), and the cores it kept busy (CPU time / wall time, ~1.0)."""
    return run_child(MODEL_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench")),
                     "one-core model run")


def run_child(code: str, what: str) -> dict:
    """Run `code` in a fresh Python (its own TensorFlow threads, its own peak RSS) and
    return the JSON object its last line prints."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise SystemExit(f"{what} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


RSS_CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
from prep_scaling import rows_for, scoring
from models.persist import load_model
model = load_model(None); model.warm_up(32)
paths = sorted(p.name for p in Path({folder!r}).glob("s*.jpg"))
rate = scoring(rows_for(paths, {n}), Path({folder!r}), model, {workers})
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"rate": rate, "rss": rss}}))
"""


def peak_rss(folder: Path, n: int, workers: int) -> dict:
    """Peak RSS (MiB) and photos/s of a fresh scoring process over `n` photos."""
    code = RSS_CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), folder=str(folder),
                            n=n, workers=workers)
    return run_child(code, "RSS run")


def best(repeats: int, fn, *args) -> float:
    return max(fn(*args) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=400, help="photos per timed run")
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from jobs.scoring_setup import available_cores
    from models.persist import load_model

    cores = available_cores()
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="ageseg-prep-") as tmp:
        root = Path(tmp)
        rows = rows_for(write_scenes(root), args.photos)
        model = load_model(None)
        model.warm_up(BATCH)
        card, size = model.card, model.image_size
        print(f"{cores} cores, {len(rows)} photos ({DISTINCT} distinct scenes), batches of "
              f"{BATCH}; model {model.version} on {model.device}, {model.precision}")
        prep = {n: best(args.repeats, prep_only, rows, root, card, size, n)
                for n in range(1, cores + 1)}
        for n, rate in prep.items():
            print(f"prep only, {n} thread(s): {rate:7.1f} photos/s  ({rate / prep[1]:.2f}x 1)")
        stand_in = StandIn(card, size)
        ceiling = {n: best(args.repeats, scoring, rows, root, stand_in, n)
                   for n in sorted({1, cores})}
        for n, rate in ceiling.items():
            print(f"score_photos, stand-in model, {n} prep worker(s): {rate:7.1f} photos/s  "
                  f"({rate / ceiling[1]:.2f}x 1; target at {cores}: >= 1.8x)")
        faces_per_s = max(model_only(model), model_only(model))
        child = model_one_core()
        one_core = child["rate"]
        real = {n: best(args.repeats, scoring, rows, root, model, n) for n in sorted({1, cores})}
        ideal = cores / (1 / prep[1] + 1 / one_core)
        optimistic = cores / (1 / prep[1] + 1 / faces_per_s)
        print(f"model alone: {one_core:.1f} faces/s on one core ({1000 / one_core:.1f} ms a "
              f"face, {child['cores']:.2f} cores busy), {faces_per_s:.1f} on all {cores} "
              f"({1000 / faces_per_s:.1f} ms); prep on "
              f"one thread {1000 / prep[1]:.1f} ms a photo")
        print(f"ideal for {cores} cores, C / (prep_1 + model_1) with both on one core: "
              f"{ideal:.1f} photos/s (the model's {cores}-core wall time in place of model_1 "
              f"would say {optimistic:.1f}: more than {cores} cores can do while prep shares "
              f"them)")
        for n, rate in real.items():
            print(f"score_photos, real model, {n} prep worker(s): {rate:7.1f} photos/s  "
                  f"({rate / real[1]:.2f}x 1, {rate / ideal:.0%} of ideal)")
        print(f"targets: real model at {cores} workers >= 1.25x 1 worker "
              f"({real[cores] / real[1]:.2f}x; no worker count can beat ideal / 1 worker = "
              f"{ideal / real[1]:.2f}x here, as 1 worker already overlaps the model's "
              f"threads with prep) and >= 85 % of ideal ({real[cores] / ideal:.0%})")
        small, large = peak_rss(root, args.small, cores), peak_rss(root, args.large, cores)
        print(f"peak RSS, real model, {cores} workers: {args.small} photos {small['rss']:.0f} "
              f"MiB, {args.large} photos {large['rss']:.0f} MiB "
              f"({large['rss'] / small['rss']:.2f}x; flat is ~1.0x); {large['rate']:.1f} "
              f"photos/s over the large day")
    load = os.getloadavg()[0]
    # The bench itself keeps about `cores` busy; a load beyond that is someone else's work.
    verdict = ("well above the core count: the machine was busy" if load > cores + 1
               else "the bench's own work: the machine was otherwise quiet")
    print(f"bench took {time.time() - began:.0f}s; load average {load:.1f} on "
          f"{os.cpu_count()} CPUs ({verdict})")


if __name__ == "__main__":
    main()
