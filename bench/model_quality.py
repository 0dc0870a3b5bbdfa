"""Age-model quality on held-out real faces (../shared/faces), next to the study and targets.

Evaluates a model (default: the shipped one) on the fixed test split of the labelled faces
(the split the model's recipe held out: same seed and fractions), and prints the `evaluate`
figures beside the original study's validation MAE and this project's targets. With
--train it first trains a model with the project's own `train` command.

Skips cleanly (exit 0) when the labelled faces are absent, as on a fresh clone.

Usage: python bench/model_quality.py [--faces ../shared/faces] [--model M] [--train ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY_MAE = 6.07  # the original study: ImageNet-pretrained ResNet50, GPU, 25 % validation
TARGETS = {"mae": 5.0, "under18_flagged_at_25": 0.99, "over30_flagged_at_25": 0.10}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--split", default="test", choices=["test", "val", "all"])
    parser.add_argument("--train", nargs=argparse.REMAINDER, default=None,
                        help="train first; the rest of the line goes to `ageseg train`")
    args = parser.parse_args()
    labels, images = args.faces / "labels.csv", args.faces / "final_files"
    if not labels.is_file() or not images.is_dir():
        print(f"skipped: no labelled faces at {args.faces}")
        return 0
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    model = args.model
    if args.train is not None:
        model = model or ROOT / "var" / "bench" / "model_quality.ageseg"
        started = time.time()
        subprocess.run([sys.executable, "-m", "jobs", "train", "--labels", str(labels),
                        "--images", str(images), "--out", str(model), *args.train],
                       check=True, env=env, cwd=ROOT)
        print(f"training took {time.time() - started:.0f}s")
    cmd = [sys.executable, "-m", "jobs", "evaluate", "--labels", str(labels), "--images",
           str(images), "--split", args.split, "--json"]
    if model:
        cmd += ["--model", str(model)]
    started = time.time()
    out = subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"evaluated {metrics['n']} {args.split} faces with model {metrics['model_version']} "
          f"in {time.time() - started:.0f}s on {platform.machine()}, {os.cpu_count()} cores")
    print(f"MAE {metrics['mae']:.2f} years (study: {STUDY_MAE}; target <= {TARGETS['mae']}); "
          f"ratio to study {metrics['mae'] / STUDY_MAE:.2f}")
    for key, target in TARGETS.items():
        value = metrics[key]
        ok = value is not None and (value <= target if key != "under18_flagged_at_25"
                                    else value >= target)
        print(f"  {key}: {value if value is None else round(value, 4)} "
              f"(target {'>=' if key == 'under18_flagged_at_25' else '<='} {target}) "
              f"{'met' if ok else 'NOT met'}")
    if metrics.get("threshold_catching_99pct_13_17") is not None:
        print(f"  to catch 99% of 13-17 year olds the threshold would be "
              f"{metrics['threshold_catching_99pct_13_17']:.1f}; it would flag "
              f"{metrics['over30_flagged_at_that_threshold']:.1%} of real 30+")
    print("by band:")
    for band, row in metrics["by_band"].items():
        mae = "-" if row["mae"] is None else f"{row['mae']:.2f}"
        print(f"  {band:>6}: n={row['n']:>5}  MAE={mae}")
    for group in ("by_source", "by_gender", "by_race"):
        if metrics.get(group):
            shown = ", ".join(f"{k} {v['mae']:.2f} (n={v['n']})"
                              for k, v in metrics[group].items() if v.get("n"))
            print(f"{group}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
