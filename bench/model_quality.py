"""Age-model quality on held-out real faces (../shared/faces), next to the study and targets.

Evaluates a model (default: the shipped one) on the fixed test split of the labelled faces
(the split the model's recipe held out: same seed and fractions), and prints the `evaluate`
figures beside the original study's validation MAE and this project's targets: the Challenge
25 operating point and its trade-off curve, and the 13-17 year olds of every face the model
never trained on (validation and test splits) with 95 % Wilson intervals and the worst
outliers listed for a human to check their labels. With --train it first trains a model
with the project's own `train` command.

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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
STUDY_MAE = 6.07  # the original study: ImageNet-pretrained ResNet50, GPU, 25 % validation
TARGETS = {"mae": 5.0, "flagged_13_17": 0.975, "flagged_30_plus": 0.10,
           "calibration_error": 0.03}
AT_LEAST = {"flagged_13_17"}


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
    # --model is the group's option: it comes before the command.
    cmd = [sys.executable, "-m", "jobs", *(["--model", str(model)] if model else []),
           "evaluate", "--labels", str(labels), "--images", str(images), "--split",
           args.split, "--json"]
    started = time.time()
    out = subprocess.run(cmd, check=True, env=env, cwd=ROOT, capture_output=True, text=True)
    metrics = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"evaluated {metrics['n']} {args.split} faces with model {metrics['model_version']} "
          f"in {time.time() - started:.0f}s on {platform.machine()}, {os.cpu_count()} cores")
    print(f"MAE {metrics['mae']:.2f} years (study: {STUDY_MAE}; target <= {TARGETS['mae']}); "
          f"ratio to study {metrics['mae'] / STUDY_MAE:.2f}")
    if metrics.get("flag_probability") is not None:
        print(f"operating point: flag when P(age < 25) >= {metrics['flag_probability']}")
    for key, target in TARGETS.items():
        value = metrics.get(key)
        ok = value is not None and (value >= target if key in AT_LEAST else value <= target)
        print(f"  {key}: {value if value is None else round(value, 4)} "
              f"(target {'>=' if key in AT_LEAST else '<='} {target}) "
              f"{'met' if ok else 'NOT met'}")
    for row in metrics.get("trade_off", []):
        print(f"  trade-off p={row['p']:<5g} 13-17 {row['13_17']:.1%}  25-29 "
              f"{row['25_29']:.1%}  30+ {row['30_plus']:.1%}")
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
    teens(labels, images, model, metrics.get("flag_probability"))
    return 0


def teens(labels: Path, images: Path, model_path: Path | None, point: float | None) -> None:
    """The 13-17 year olds the model never trained on, with intervals and the worst ones."""
    sys.path.insert(0, str(ROOT))
    from analytics.recommendations import wilson_interval
    from models.labels import load_labels, split_labels
    from models.persist import load_model
    from models.predict import predict_files_all

    model = load_model(model_path)
    recipe = model.card.get("recipe", {})
    splits = split_labels(load_labels(labels, images).frame, recipe.get("seed", 1337),
                          recipe.get("val_frac", 0.1), recipe.get("test_frac", 0.15))
    unseen = pd.concat([splits["val"], splits["test"]], ignore_index=True)
    teen = unseen[(unseen["real_age"] >= 13) & (unseen["real_age"] < 18)].reset_index(drop=True)
    ages, probs, head = predict_files_all(model, teen["path"].tolist())
    teen = teen.assign(estimate=ages.astype("float64").round(1))
    rows = [("estimated under 25", teen["estimate"] < 25)]
    under = model.p_under(probs, head, 25.0)
    if under is not None and point is not None:
        teen["p_under_25"] = under.round(3)
        rows.append((f"flagged at P >= {point}", teen["p_under_25"] >= point))
    trained = splits["train"]["real_age"]
    total = int(((trained >= 13) & (trained < 18)).sum()) + len(teen)
    print(f"\n13-17 year olds never trained on (validation + test splits): {len(teen)} of "
          f"{total} in the data")
    for name, hit in rows:
        low, high = wilson_interval(pd.Series([int(hit.sum())]), pd.Series([len(teen)]))
        print(f"  {name}: {int(hit.sum())}/{len(teen)} = {hit.mean():.1%} "
              f"(95 % Wilson interval {low[0]:.1%} to {high[0]:.1%})")
    print("  worst outliers (check their labels by eye):")
    worst = teen.assign(err=teen["estimate"] - teen["real_age"]).sort_values("err").tail(10)
    for r in worst[::-1].itertuples():
        extra = f", P(under 25) {r.p_under_25}" if "p_under_25" in teen else ""
        print(f"    {r.file_name}: label {r.real_age:.0f}, estimate {r.estimate}{extra}")


if __name__ == "__main__":
    sys.exit(main())
