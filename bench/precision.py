"""float32 vs bf16: does the shipped model's quality hold in bfloat16, and how much faster?

Runs a model (default: the shipped one) twice on the fixed test split of the labelled faces
(../shared/faces, split as the model's recipe held it out, the same code as
bench/model_quality.py): once with the backbone in float32, once in mixed_bfloat16. Prints
MAE and the Challenge 25 flag rates (real 13-17 and real 30+ flagged at the card's
operating point) of each, their differences, the model's time per face in each, and whether
bf16 meets the bar for being the CPU default (`CPU_BF16_BY_DEFAULT` in models/persist.py):
MAE moves <= 0.02 y and each flag rate <= 0.5 point. Re-run it on a retrained model
(--model) to re-check the decision.

Skips cleanly (exit 0) when the labelled faces are absent, as on a fresh clone.

Usage: python bench/precision.py [--faces ../shared/faces] [--model M] [--limit N] [--json]
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MAX_MAE_MOVE = 0.02  # years
MAX_FLAG_MOVE = 0.005  # half a percentage point


def test_split(labels: Path, images: Path, card: dict):
    """The test faces the model's recipe held out (bench/model_quality.py's split)."""
    from models.labels import load_labels, split_labels

    recipe = card.get("recipe", {})
    splits = split_labels(load_labels(labels, images).frame, recipe.get("seed", 1337),
                          recipe.get("val_frac", 0.1), recipe.get("test_frac", 0.15))
    return splits["test"].reset_index(drop=True)


def measure(model, faces, batch_size: int) -> dict:
    """MAE and flag rates of a loaded model on the faces, with its time per face read from
    files (decode included)."""
    from models.calibrate import flag_rates
    from models.predict import predict_files_all

    model.warm_up(batch_size)
    started = time.perf_counter()
    ages, probs, head = predict_files_all(model, faces["path"].tolist(), batch_size)
    seconds = time.perf_counter() - started
    truth = faces["real_age"].to_numpy(np.float64)
    calibration = model.card.get("calibration") or {}
    point = calibration.get("flag_probability")
    age = calibration.get("challenge_age", 25.0)
    under = model.p_under(probs, head, age)  # as compliance reads it: the card's source
    rates = flag_rates(under, truth, point) if under is not None and point is not None else {}
    return {"precision": model.precision, "n": len(faces),
            "mae": float(np.abs(ages.astype(np.float64) - truth).mean()),
            "flagged_13_17": rates.get("13_17"), "flagged_30_plus": rates.get("30_plus"),
            "ms_per_face_with_decode": 1000 * seconds / max(1, len(faces)),
            "ages": ages}


def model_ms_per_face(models: list, batch_size: int, n: int = 512, rounds: int = 5
                      ) -> list[float]:
    """Each model alone on the same in-memory faces, taking turns round after round (so a
    busy moment on a shared machine hits both alike); the best round of each."""
    size = models[0].image_size
    x = np.random.default_rng(0).integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    best = [float("inf")] * len(models)
    for _ in range(rounds):
        for i, model in enumerate(models):
            started = time.perf_counter()
            model.predict_faces(x, batch_size=batch_size)
            best[i] = min(best[i], time.perf_counter() - started)
    return [1000 * b / n for b in best]


def verdict(base: dict, bf16: dict) -> dict:
    """The moves and whether bf16 may be the CPU default."""
    moves = {"mae": abs(bf16["mae"] - base["mae"])}
    for key in ("flagged_13_17", "flagged_30_plus"):
        if base[key] is not None and bf16[key] is not None:
            moves[key] = abs(bf16[key] - base[key])
    ok = (moves["mae"] <= MAX_MAE_MOVE and len(moves) == 3
          and all(moves[k] <= MAX_FLAG_MOVE for k in ("flagged_13_17", "flagged_30_plus")))
    moves["mean_abs_age_change"] = float(np.abs(bf16["ages"] - base["ages"]).mean())
    moves["speedup"] = base["ms_per_face_model"] / bf16["ms_per_face_model"]
    return {"moves": moves, "bf16_may_be_default": ok}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="first N test faces only")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args()
    labels, images = args.faces / "labels.csv", args.faces / "final_files"
    if not labels.is_file() or not images.is_dir():
        print(f"skipped: no labelled faces at {args.faces}")
        return 0
    from models.persist import DEFAULT_MODEL_PATH, cpu_has_bf16, read_card

    card = read_card(args.model or DEFAULT_MODEL_PATH)
    faces = test_split(labels, images, card)
    if args.limit:
        faces = faces.head(args.limit)
    print(f"model {card.get('version')}: {len(faces)} test faces; CPU has bfloat16 units: "
          f"{cpu_has_bf16()}; {os.cpu_count()} cores")
    from models.persist import load_model

    models = {p: load_model(args.model, precision=p) for p in ("float32", "bf16")}
    results = {p: measure(m, faces, args.batch_size) for p, m in models.items()}
    speeds = model_ms_per_face(list(models.values()), args.batch_size)
    for r, ms in zip(results.values(), speeds):
        r["ms_per_face_model"] = ms
    for r in results.values():
        print(f"  {r['precision']:>7}: MAE {r['mae']:.4f} y, real 13-17 flagged "
              f"{_pct(r['flagged_13_17'])}, real 30+ flagged {_pct(r['flagged_30_plus'])}; "
              f"model {r['ms_per_face_model']:.2f} ms/face "
              f"(with file decode {r['ms_per_face_with_decode']:.2f})")
    decision = verdict(results["float32"], results["bf16"])
    m = decision["moves"]
    print(f"  moves: MAE {m['mae']:.4f} y (bar {MAX_MAE_MOVE}), 13-17 flagged "
          f"{100 * m.get('flagged_13_17', float('nan')):.2f} pt, 30+ flagged "
          f"{100 * m.get('flagged_30_plus', float('nan')):.2f} pt (bar "
          f"{100 * MAX_FLAG_MOVE:.1f}); ages move {m['mean_abs_age_change']:.3f} y on "
          f"average; bf16 model speed-up {m['speedup']:.2f}x")
    print(f"bf16 may be the CPU default: {'yes' if decision['bf16_may_be_default'] else 'no'}")
    if args.json:
        figures = {p: {k: v for k, v in r.items() if k != "ages"} for p, r in results.items()}
        print(json.dumps({**figures, **decision}))
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


if __name__ == "__main__":
    sys.exit(main())
