"""What a GPU node does, on Keras' JAX backend without TensorFlow: run by bench/gpu_check.sh.

Stages, each printing one `stage NAME: ...` line as it ends (bench/gpu_dryrun.sh checks
them against the `plan:` line printed first), in order of value so that a run cut short by
the time limit still has what matters most:

- setup: JAX's devices, Keras, the shipped model loaded (mixed float16 on a GPU);
- scenes: checkout scenes rendered here, on the GPU machine (carrying them would cost
  ~4 MiB of the 64 MiB a device call may carry), from the public-domain portraits that
  matplotlib (and scikit-image) ship;
- model:B: the model alone on in-memory faces at batch B (first the job's GPU batch, 256):
  faces/s, best of --rounds rounds of at least --round-s seconds each; the first call
  (XLA compile + one run) is timed apart;
- end_to_end:W: `score_photos` over the scenes with W prep workers (1 and one per core):
  the job's scoring line, --photos-per-worker x W photos;
- model:B for the other batches (64, 1024);
- litert: the LiteRT runtime, if the model file holds a LiteRT graph (skipped otherwise);
- result: one JSON line with every figure.

Default sizes, for one H100 inside bench/gpu_check.sh's 300 s limit (which also covers
installing the wheels, ~10 s): the model's input is 64x64, so one ResNet50 pass (two with
the mirror average) is ~0.7 GFLOP a face and an H100 should score thousands to tens of
thousands of faces/s: 3 rounds x 2 s at each of 3 batches is ~20 s of timing. XLA's compile
with cuDNN autotuning per batch shape is what costs most and is not known here (guessed
20-40 s each, ~100 s for three; the `first call` figures measure it). BlazeFace runs on the
CPU at ~80 photos/s a core (measured on the development machine), so 500 photos a worker
is ~6 s with 1 worker and ~6-20 s with 16 (8,000 photos; slower if 16 threads scale worse
than 2 did). Loading the model and JAX ~15 s, 100 scenes a few seconds. Together ~150 s:
about half the limit is left for a slower compile than guessed. `--quick` runs every stage
at toy sizes in under a minute, also on a CPU (the dry run).

Exit codes: 0 all stages ran; 3 no GPU seen by JAX (nothing measured; --allow-cpu runs
anyway); 5 TensorFlow was imported; 6 a stage failed (the others still ran).

Usage: KERAS_BACKEND=jax python bench/gpu_check.py [--quick] [--allow-cpu] [sizes...]
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import os
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EXIT_NO_GPU = 3
EXIT_TENSORFLOW = 5
EXIT_STAGE_FAILED = 6
QUICK = {"batches": "4", "rounds": 1, "round_s": 0.0, "photos_per_worker": 4, "scenes": 4,
         "e2e_batch": 4}
STARTED = time.perf_counter()


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses `import tensorflow`, so a machine that has it behaves like the GPU image,
    which has not: Keras' optional TensorFlow paths then take their fallbacks."""

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("gpu_check: TensorFlow is blocked (the GPU image has none)")
        return None


def stage(name: str, text: str) -> None:
    """One stage's line, with the seconds since the check started (to plan GPU time)."""
    print(f"[{time.perf_counter() - STARTED:6.1f} s] stage {name}: {text}", flush=True)


def model_rate(model, batch: int, rounds: int, round_s: float) -> tuple[float, float]:
    """(faces/s of the model alone at `batch`, seconds of the first call: compile + 1 run).

    Each round predicts 4 batches of random faces over and over until `round_s` has passed
    (at least once); the best round counts."""
    size = model.image_size
    x = np.random.default_rng(0).integers(0, 255, (4 * batch, size, size, 3), dtype=np.uint8)
    started = time.perf_counter()
    model.predict_faces(x[:batch], batch_size=batch)  # compiles this batch shape
    compile_s = time.perf_counter() - started
    best = 0.0
    for _ in range(rounds):
        faces, started = 0, time.perf_counter()
        while True:
            model.predict_faces(x, batch_size=batch)
            faces += len(x)
            elapsed = time.perf_counter() - started
            if elapsed >= round_s:
                break
        best = max(best, faces / elapsed)
    return best, compile_s


def render_scenes(folder: Path, count: int, workers: int) -> int:
    """`count` JPEG checkout scenes in `folder`; returns how many portraits they show."""
    from demo.scenes import available_demo_faces, make_checkout_scene

    faces = available_demo_faces()

    def one(i: int) -> None:
        scene = make_checkout_scene(faces[i % len(faces)][0], np.random.default_rng(i))
        (folder / f"s{i:04d}.jpg").write_bytes(scene)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    return len(faces)


def end_to_end(model, scenes: Path, workers: int, batch: int, photos: int):
    """The job's scoring path (BlazeFace on the CPU, the model on the GPU) over `photos`."""
    from models.blazeface import BlazeFaceDetector
    from models.score import ScoringStats, score_photos

    files = sorted(p.name for p in scenes.glob("*.jpg"))
    rows = [(i, files[i % len(files)]) for i in range(photos)]
    stats = ScoringStats()
    for _ in score_photos(rows, scenes, model, BlazeFaceDetector(), batch, 25.0,
                          prep_workers=workers, stats=stats):
        pass
    return stats


def litert_stage(model_path: Path, cores: int, batch: int, round_s: float) -> tuple[str, dict]:
    """The LiteRT runtime's line and figures, or why it was skipped.

    Here goes the `--runtime litert` model once scoring has it: until then this times the
    raw LiteRT graph the model file holds (any `*.tflite` member), on the CPU with one
    thread per core, on random input of the graph's own shape and type. A model file
    without one (Keras only) is skipped: the check never depends on it."""
    with zipfile.ZipFile(model_path) as zf:
        graphs = [n for n in zf.namelist() if n.endswith(".tflite")]
        if not graphs:
            return f"skipped: no LiteRT graph in {model_path.name} (Keras only)", {}
        content = zf.read(graphs[0])
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=cores)
    [inp] = interpreter.get_input_details()[:1]
    shape = list(inp["shape"])
    if len(inp.get("shape_signature", [])) and inp["shape_signature"][0] == -1:
        shape[0] = batch
        interpreter.resize_tensor_input(inp["index"], shape)
    interpreter.allocate_tensors()
    dtype = np.dtype(inp["dtype"])
    x = np.random.default_rng(0).integers(0, 255, shape).astype(dtype)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()  # first call apart, as for the model stages
    runs, started = 0, time.perf_counter()
    while True:
        interpreter.invoke()
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= round_s:
            break
    batch, rate = int(shape[0]), float(runs * shape[0] / elapsed)
    return (f"{graphs[0]} batch {batch} {dtype.name}: {rate:,.0f} faces/s on the CPU "
            f"({cores} threads)"), {"graph": graphs[0], "batch": batch, "faces_per_s": rate}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes: every stage in under a minute, also on a CPU")
    parser.add_argument("--allow-cpu", action="store_true",
                        help=f"run without a GPU (else exit {EXIT_NO_GPU} at once)")
    parser.add_argument("--model", type=Path, default=None, help="default: the shipped model")
    parser.add_argument("--precision", default="auto",
                        help="auto: mixed float16 on a GPU, float32 on a CPU (the job's rule)")
    parser.add_argument("--batches", default="64,256,1024", help="model-alone batch sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-s", type=float, default=2.0)
    parser.add_argument("--scenes", type=int, default=100, help="scenes rendered here")
    parser.add_argument("--scene-dir", type=Path, default=None,
                        help="score these *.jpg instead of rendering scenes")
    parser.add_argument("--photos-per-worker", type=int, default=500)
    parser.add_argument("--e2e-batch", type=int, default=256,
                        help="end-to-end batch (the job's GPU default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == parser.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.meta_path.insert(0, _NoTensorFlow())
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax
    import keras

    from jobs.scoring_setup import available_cores
    from models.persist import DEFAULT_MODEL_PATH, load_model

    devices = jax.devices()
    gpus = [d for d in devices if d.platform == "gpu"]
    if not gpus and not args.allow_cpu:
        print(f"gpu_check: no GPU seen by JAX {jax.__version__} (devices: {devices}); "
              f"nothing measured (--allow-cpu to run on the CPU)", flush=True)
        return EXIT_NO_GPU
    cores = available_cores()
    batches = [int(b) for b in args.batches.split(",")]
    workers = sorted({1, cores})
    model_path = args.model or DEFAULT_MODEL_PATH
    # In order of value, so a run cut short by the time limit still has what matters most:
    # the model at the job's GPU batch, end to end, the other batches, then LiteRT.
    first = [b for b in batches if b == args.e2e_batch]
    plan = (["setup", "scenes"] + [f"model:{b}" for b in first]
            + [f"end_to_end:{w}" for w in workers]
            + [f"model:{b}" for b in batches if b not in first] + ["litert", "result"])
    print("plan: " + " ".join(plan), flush=True)
    failed: list[str] = []

    started = time.perf_counter()
    model = load_model(args.model, precision=args.precision)
    result: dict = {"jax": jax.__version__, "keras": keras.__version__,
                    "backend": keras.backend.backend(), "devices": [str(d) for d in devices],
                    "model": model.version, "device": model.device,
                    "precision": model.precision, "cores": cores, "model_faces_per_s": {},
                    "compile_s": {}}
    stage("setup", f"JAX {jax.__version__} devices {[str(d) for d in devices]}; Keras "
          f"{keras.__version__} on {keras.backend.backend()}; model {model.version} "
          f"({model.image_size}px) on {model.device}, {model.precision}, loaded in "
          f"{time.perf_counter() - started:.1f} s; {cores} cores")

    def model_stage(batch: int) -> None:
        rate, compile_s = model_rate(model, batch, args.rounds, args.round_s)
        result["model_faces_per_s"][batch] = rate
        result["compile_s"][batch] = compile_s
        stage(f"model:{batch}", f"{rate:,.0f} faces/s (model alone, batch {batch}, best "
              f"of {args.rounds} x {args.round_s:g} s; first call {compile_s:.1f} s)")

    with tempfile.TemporaryDirectory(prefix="gpu_check_scenes_") as tmp:
        scenes = args.scene_dir or Path(tmp)
        if args.scene_dir is None:
            started = time.perf_counter()
            portraits = render_scenes(scenes, args.scenes, cores)
            stage("scenes", f"rendered {args.scenes} scenes of {portraits} portraits in "
                  f"{time.perf_counter() - started:.1f} s")
        else:
            stage("scenes", f"{len(list(scenes.glob('*.jpg')))} *.jpg in {scenes}")

        for batch in first:
            model_stage(batch)
        for w in workers:
            stats = end_to_end(model, scenes, w, args.e2e_batch, args.photos_per_worker * w)
            result[f"end_to_end_{w}_workers"] = stats.photos_per_second
            stage(f"end_to_end:{w}", stats.line(verbose=True))
    for batch in batches:
        if batch not in first:
            model_stage(batch)

    try:
        line, figures = litert_stage(model_path, cores, max(batches), args.round_s)
        result["litert"] = figures
    except Exception as exc:  # noqa: BLE001  (the Keras figures still count)
        line = f"FAILED: {type(exc).__name__}: {exc}"
        failed.append("litert")
    stage("litert", line)

    if "tensorflow" in sys.modules:
        print("gpu_check: TensorFlow was imported", flush=True)
        return EXIT_TENSORFLOW
    result["failed"] = failed
    stage("result", json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return EXIT_STAGE_FAILED if failed else 0


if __name__ == "__main__":
    sys.exit(main())
