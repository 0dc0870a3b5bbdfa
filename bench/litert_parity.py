"""LiteRT vs Keras, and int8 vs float16 Keras weights, on the real test split (issue 32).

Decodes the test faces the model's recipe held out (bench/precision.py's split) once, then
runs the same crops through:
- Keras with the reference weights (--reference, default: the shipped file, float16 kernels),
- Keras with the candidate's weights (--model: int8 kernels, carrying a LiteRT graph),
- LiteRT on the candidate's graph.
Prints each one's MAE and Challenge 25 flag rates (real 13-17 and real 30+ flagged at the
card's operating point) and the moves against the bars: LiteRT vs Keras (same weights) MAE
within 0.02 y, ages within 0.3 y on average, P(under 25) within 0.01 on average, flag rates
within 0.5 point; int8 vs float16 Keras weights MAE within 0.02 y, flags within 0.5 point.
With --record, the figures go on the candidate's card (`litert.parity_test_split`,
`weights.parity_test_split`).

Skips cleanly (exit 0) when the labelled faces are absent, as on a fresh clone.

Usage: python bench/litert_parity.py --model /root/.cache/ageseg/litert.ageseg
           [--reference models/default.ageseg] [--faces ../shared/faces] [--limit N] [--record]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BARS = {"mae": 0.02, "mean_abs_age_diff": 0.3, "mean_abs_p_under_diff": 0.01,
        "flagged_13_17": 0.005, "flagged_30_plus": 0.005}
WEIGHT_BARS = {"mae": 0.02, "flagged_13_17": 0.005, "flagged_30_plus": 0.005}


def decode(paths: list[str], size: int, batch_size: int = 256) -> np.ndarray:
    """The crops the model sees, read as bench/precision.py reads them (models/data.py)."""
    from models.data import face_dataset

    batches = list(face_dataset(paths, None, size, batch_size).as_numpy_iterator())
    return np.concatenate(batches).astype(np.uint8) if batches else np.zeros((0, size, size, 3))


def figures(model, faces: np.ndarray, truth: np.ndarray, batch_size: int) -> dict:
    """MAE and flag rates of one runtime on the crops, with its ages and P(under)."""
    from models.calibrate import flag_rates

    ages, probs, head = model.predict_all(faces, batch_size)
    calibration = model.card.get("calibration") or {}
    point = calibration.get("flag_probability")
    under = model.p_under(probs, head, calibration.get("challenge_age", 25.0))
    rates = flag_rates(under, truth, point) if under is not None and point is not None else {}
    return {"mae": float(np.abs(ages.astype(np.float64) - truth).mean()),
            "flagged_13_17": rates.get("13_17"), "flagged_30_plus": rates.get("30_plus"),
            "ages": ages.astype(np.float64), "p_under": under}


def moves(base: dict, other: dict) -> dict:
    """How far `other` is from `base`: MAE, mean per-face age and P(under) differences,
    flag rates."""
    out = {"mae": abs(other["mae"] - base["mae"]),
           "mean_abs_age_diff": float(np.abs(other["ages"] - base["ages"]).mean()),
           "max_abs_age_diff": float(np.abs(other["ages"] - base["ages"]).max())}
    if base["p_under"] is not None and other["p_under"] is not None:
        out["mean_abs_p_under_diff"] = float(np.abs(other["p_under"] - base["p_under"]).mean())
    for key in ("flagged_13_17", "flagged_30_plus"):
        if base[key] is not None and other[key] is not None:
            out[key] = abs(other[key] - base[key])
    return out


def passes(move: dict, bars: dict) -> bool:
    return all(key in move and move[key] <= bar for key, bar in bars.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="the candidate: int8 weights and a LiteRT graph (ageseg export)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="the Keras weights to compare against (default: shipped model)")
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="first N test faces only")
    parser.add_argument("--record", action="store_true", help="write the figures on the card")
    args = parser.parse_args()
    labels, images = args.faces / "labels.csv", args.faces / "final_files"
    if not labels.is_file() or not images.is_dir():
        print(f"skipped: no labelled faces at {args.faces}")
        return 0
    from bench.precision import test_split
    from models.litert import load_litert
    from models.persist import DEFAULT_MODEL_PATH, add_members, load_model, read_card

    reference_path = args.reference or DEFAULT_MODEL_PATH
    card = read_card(args.model)
    split = test_split(labels, images, card)
    if args.limit:
        split = split.head(args.limit)
    truth = split["real_age"].to_numpy(np.float64)
    faces = decode(split["path"].tolist(), int(card["image_size"]))
    reference_storage = (read_card(reference_path).get("weights") or {}).get(
        "storage", "kernels float16; rest float32")
    print(f"model {card.get('version')}: {len(faces)} test faces, one process, the "
          f"machine shared with other work (timings are not the point here)")
    runs = {
        f"Keras, {reference_storage.split(';')[0]} ({reference_path.name})":
            load_model(reference_path, precision="float32"),
        f"Keras, int8 kernels ({args.model.name})": load_model(args.model, precision="float32"),
        f"LiteRT, dynamic-range int8 ({args.model.name})": load_litert(args.model, threads=1),
    }
    results = {}
    for name, model in runs.items():
        results[name] = r = figures(model, faces, truth, args.batch_size)
        print(f"  {name:>50}: MAE {r['mae']:.4f} y, real 13-17 flagged "
              f"{_pct(r['flagged_13_17'])}, real 30+ flagged {_pct(r['flagged_30_plus'])}")
    f16, int8, lite = results.values()
    lite_move, weight_move = moves(int8, lite), moves(f16, int8)
    lite_vs_f16 = moves(f16, lite)
    for label, move, bars in (("LiteRT vs Keras (same int8 weights)", lite_move, BARS),
                              ("Keras int8 vs float16 weights", weight_move, WEIGHT_BARS),
                              ("LiteRT vs Keras float16 (today's runtime)", lite_vs_f16, BARS)):
        print(f"  {label}: {_describe(move)} -> {'met' if passes(move, bars) else 'MISSED'}")
    if args.record:
        test = {"faces": len(faces), "split": "test split of the recipe"}
        lite_entry = dict(card["litert"])
        lite_entry["parity_test_split"] = {
            **test, "mae_keras": round(int8["mae"], 4), "mae_litert": round(lite["mae"], 4),
            **_rounded(lite_move),
            "flag_rates_litert": {"13_17": lite["flagged_13_17"],
                                  "30_plus": lite["flagged_30_plus"]}}
        weights_entry = dict(card.get("weights") or {})
        weights_entry["parity_test_split"] = {
            **test, "against": reference_storage, "mae_reference": round(f16["mae"], 4),
            "mae_int8": round(int8["mae"], 4), **_rounded(weight_move)}
        add_members(args.model, {}, {"litert": lite_entry, "weights": weights_entry})
        print(f"recorded on the card of {args.model}")
    print(json.dumps({"litert_vs_keras": lite_move, "int8_vs_float16": weight_move,
                      "litert_vs_keras_float16": lite_vs_f16,
                      "mae": {k: v["mae"] for k, v in results.items()}}))
    return 0


def _rounded(move: dict) -> dict:
    return {k: round(v, 5) for k, v in move.items()}


def _describe(move: dict) -> str:
    return (f"MAE moves {move['mae']:.4f} y, ages {move['mean_abs_age_diff']:.3f} y on "
            f"average (largest {move['max_abs_age_diff']:.2f}), P(under) "
            f"{move.get('mean_abs_p_under_diff', float('nan')):.4f}, 13-17 flagged "
            f"{100 * move.get('flagged_13_17', float('nan')):.2f} pt, 30+ flagged "
            f"{100 * move.get('flagged_30_plus', float('nan')):.2f} pt")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


if __name__ == "__main__":
    sys.exit(main())
