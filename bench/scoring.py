"""Scoring throughput and memory: photos on disk → Parquet, next to the model alone.

Measured in one run, on this machine:
- model-only forward throughput (faces already in memory) at the job's batch size, through
  the same `predict_faces` the job uses (so with the mirror average when the shipped
  model's card asks for it: two forward passes per face);
- the nightly job on demo days of N_SMALL and N_LARGE photos: photos/s of the scoring
  pipeline (from the run marker, model load excluded) and peak RSS of the whole process;
- the scenes with each face detector: BlazeFace (the default) and MTCNN, and their ratio;
- the same with --photos-are-faces (no face detection), to show what detection costs;
- the study's ResNet50 at 224 px, forward pass alone, for scale: our 64 px model is ~12x
  cheaper, so face detection, not the model, now bounds the scenes pipeline.

Both model-only figures and the job trace their graphs before timing starts (the job does
it at model load, as a server warms up), so all three count the same work.

Usage: python bench/scoring.py [--small 100] [--large 2000] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DAY = dt.date(2026, 11, 28)


def _forward_rate(make_model: str, batch_size: int, n: int, repeats: int) -> float:
    """Faces/s of a model's forward pass alone, in a fresh process: the best of `repeats`
    passes over `n` random faces after the graph is traced. `make_model` is Python code
    that binds `m` to an AgeModel."""
    code = f"""
import time, numpy as np
from models.build import build_model
from models.persist import AgeModel, load_model
{make_model}
x = np.random.default_rng(0).integers(0, 255, ({n}, m.image_size, m.image_size, 3), dtype=np.uint8)
m.warm_up({batch_size})
best = 0.0
for _ in range({repeats}):
    t = time.perf_counter(); m.predict_faces(x, batch_size={batch_size})
    best = max(best, {n} / (time.perf_counter() - t))
print(best)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=_env())
    return float(out.stdout.strip().splitlines()[-1])


def model_only(batch_size: int, n: int = 2048, repeats: int = 3) -> float:
    """The shipped model alone; best of several passes so a noisy moment cannot flatter
    the ratios."""
    return _forward_rate("m = load_model(None)", batch_size, n, repeats)


def study_model_only(batch_size: int, n: int = 96) -> float:
    """The study's model (ResNet50 at 224 px, Dense(1)) alone: the model the 85 % target was
    written for. Random weights: speed does not depend on them."""
    return _forward_rate('m = AgeModel(build_model(224, head="regression")[1])',
                         batch_size, n, repeats=1)


def nightly(workdir: Path, detector: str | None, batch_size: int) -> tuple[float, float, float]:
    """(photos/s of the pipeline, wall seconds of the process, peak RSS MiB); `detector`
    None means --photos-are-faces."""
    args = [sys.executable, "-m", "jobs", "--db-url", f"sqlite:///{workdir / 'shop.db'}",
            "--photo-root", str(workdir / "photos"), "--output-root", str(workdir / "m"),
            "--restricted-root", str(workdir / "r"), "--lock-dir", str(workdir / "l"),
            "--batch-size", str(batch_size)]
    args += ["--photos-are-faces"] if detector is None else ["--detector", detector]
    args += ["nightly", "--date", DAY.isoformat()]
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "rc = subprocess.run(sys.argv[1:]).returncode; "
               "print(time.perf_counter() - t, "
               "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")
    out = subprocess.run([sys.executable, "-c", wrapper, *args], cwd=ROOT, capture_output=True,
                         text=True, env=_env())
    wall, rss_kib, rc = out.stdout.strip().splitlines()[-1].split()
    if rc != "0":
        raise SystemExit(f"nightly failed:\n{out.stderr[-3000:]}")
    marker = json.loads(next((workdir / "m" / "_runs").glob("dt=*/SUCCESS.json")).read_text())
    return marker["photos"] / marker["seconds"], float(wall), int(rss_kib) / 1024


def build(workdir: Path, n: int, crops: bool) -> None:
    from demo.generate import build_demo

    stores = max(1, n // 500) if n >= 500 else 1
    build_demo(workdir, DAY, stores=stores, receipts_per_store=max(10, n // stores))
    if crops:  # each scene becomes a face crop: what a camera with on-board detection sends
        from PIL import Image

        from demo.scenes import available_demo_faces

        face = Image.fromarray(available_demo_faces()[0][0]).resize((128, 128))
        for p in (workdir / "photos").rglob("r*.jpg"):
            face.save(p, quality=90)


def _env() -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    started = time.time()
    forward = model_only(args.batch_size)
    print(f"model only, batch {args.batch_size}: {forward:.1f} faces/s")
    study = study_model_only(args.batch_size)
    print(f"study's model (ResNet50 at 224 px) only, batch {args.batch_size}: "
          f"{study:.1f} faces/s")
    rows = []
    modes = {"scenes+BlazeFace": "blazeface", "scenes+MTCNN": "mtcnn", "face crops": None}
    for mode, detector in modes.items():
        for n in (args.small, args.large):
            with tempfile.TemporaryDirectory(prefix="ageseg-bench-") as tmp:
                build(Path(tmp), n, crops=detector is None)
                rate, wall, rss = nightly(Path(tmp), detector, args.batch_size)
            rows.append((mode, n, rate, wall, rss))
            print(f"{mode:>13} {n:>5} photos: {rate:6.1f} photos/s "
                  f"({rate / forward:5.1%} of model-only, {rate / study:4.1f}x the 224 px "
                  f"model alone), process {wall:6.1f}s, "
                  f"peak RSS {rss:7.0f} MiB", flush=True)
    again = model_only(args.batch_size)
    print(f"model only again, after the runs: {again:.1f} faces/s; the ratios below use the "
          f"better of the two ({max(forward, again):.1f})")
    forward = max(forward, again)
    for mode, n, rate, _, _ in rows:
        print(f"{mode:>13} {n:>5} photos: {rate / forward:5.1%} of model-only")
    for mode in modes:
        small, large = [r for r in rows if r[0] == mode]
        print(f"{mode}: peak RSS {large[1]} vs {small[1]} photos = {large[4] / small[4]:.2f}x")
    rate = {(r[0], r[1]): r[2] for r in rows}
    for n in (args.small, args.large):
        ratio = rate[("scenes+BlazeFace", n)] / rate[("scenes+MTCNN", n)]
        print(f"scenes, {n} photos: BlazeFace pipeline {ratio:.2f}x the MTCNN pipeline "
              "(target >= 1.5x)")
    driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"machine: {os.cpu_count()} cores; bench took {time.time() - started:.0f}s; "
          f"max RSS of this driver {driver_rss} MiB")


if __name__ == "__main__":
    main()
