"""What a GPU node does, on Keras' JAX backend without TensorFlow: run by bench/gpu_check.sh.

1. the shipped model alone, mixed precision (float16 backbone), on in-memory faces at batch
   64, 256 and 1024: faces/s, each after its batch shape is compiled;
2. end to end: `score_photos` over the prepared scenes (var/gpu_check/scenes, written by
   bench/gpu_prepare.sh) with 1 prep worker and with one per core, and the scoring line.

Imports nothing of TensorFlow: the model loads from the .ageseg file with Keras alone and
BlazeFace runs on LiteRT (ai-edge-litert). Prints one JSON line at the end.

Usage: KERAS_BACKEND=jax python bench/gpu_check.py [--scenes DIR] [--batches 64,256,1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def model_rate(model, batch: int, rounds: int = 3) -> float:
    """Faces/s of the model alone at `batch` (best of `rounds` passes of 4 batches)."""
    size = model.image_size
    x = np.random.default_rng(0).integers(0, 255, (4 * batch, size, size, 3), dtype=np.uint8)
    model.predict_faces(x[:batch], batch_size=batch)  # compile this shape
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        model.predict_faces(x, batch_size=batch)
        best = max(best, len(x) / (time.perf_counter() - started))
    return best


def end_to_end(model, scenes: Path, workers: int, batch: int, photos: int):
    from models.blazeface import BlazeFaceDetector
    from models.score import ScoringStats, score_photos

    files = sorted(p.name for p in scenes.glob("*.jpg"))
    rows = [(i, files[i % len(files)]) for i in range(photos)]
    stats = ScoringStats()
    for _ in score_photos(rows, scenes, model, BlazeFaceDetector(), batch, 25.0,
                          prep_workers=workers, stats=stats):
        pass
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, default=ROOT / "var" / "gpu_check" / "scenes")
    parser.add_argument("--batches", default="64,256,1024")
    parser.add_argument("--photos", type=int, default=4000)
    parser.add_argument("--precision", default="float16")
    args = parser.parse_args()
    import keras

    from jobs.scoring_setup import available_cores
    from models.persist import load_model

    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    model = load_model(None, precision=args.precision)
    cores = available_cores()
    print(f"Keras {keras.__version__} on {keras.backend.backend()}; model {model.version} on "
          f"{model.device}, {model.precision}; {cores} cores", flush=True)
    result: dict = {"backend": keras.backend.backend(), "device": model.device,
                    "precision": model.precision, "cores": cores, "model_faces_per_s": {}}
    for batch in (int(b) for b in args.batches.split(",")):
        rate = model_rate(model, batch)
        result["model_faces_per_s"][batch] = rate
        print(f"model alone, batch {batch}: {rate:,.0f} faces/s", flush=True)
    if not any(args.scenes.glob("*.jpg")):
        print(f"no scenes at {args.scenes}: end to end skipped (run bench/gpu_prepare.sh)")
    else:
        batch = max(result["model_faces_per_s"], key=result["model_faces_per_s"].get)
        for workers in sorted({1, cores}):
            stats = end_to_end(model, args.scenes, workers, min(batch, 256), args.photos)
            result[f"end_to_end_{workers}_workers"] = stats.photos_per_second
            print(stats.line(verbose=True), flush=True)
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    sys.exit(main())
