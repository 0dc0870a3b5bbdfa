"""Ages from the photos a cheap checkout camera takes: each camera condition alone and all
combined, on held-out faces, as crops and through the job's own path.

Every other age figure comes from clean photos. This bench degrades held-out faces (the
split the model's card held out) the way checkout and CCTV cameras degrade them
(models/camera.py) and measures, per condition and per model:

- crops: the face file degraded at its camera size (120 px unless the condition sets the
  face size), then brought to the model's size as the job brings any face;
- scenes: the face pasted into a 640x480 checkout scene (demo/scenes.py) at 100-160 px (or
  the condition's face size), turned by the condition's head roll, the whole frame
  degraded, then JPEG bytes through `models.score.score_batch`, the job's path (decode,
  detect, crop with the card's contract, model), in memory; nothing is written.

Printed per condition: MAE, its ratio to the clean crops' MAE of the same faces, the share
aged (scenes: the face found), the 13-17 and 30+ year olds flagged at the card's operating
point (P(under 25) >= flag_probability), the calibration error of P(under 25), and the
median quality signals of the crops the model saw (models/quality.py), from which the job's
`low_quality` ranges were chosen.

The conditions and why these strengths (models/camera.py holds the numbers):

- exposure -1 / -2 stops, +1 / +1.5 stops: auto-exposure meters the frame, so a shopper
  against a shop window or door is 1-2 stops dark and one under a spotlight 1-1.5 bright;
- contrast x0.6 / x0.4: fogged or scratched domes, haze, flat overhead light;
- colour cast, red +15 % blue -15 % / +30 % -30 %: white balance fooled by sodium, tungsten
  or fluorescent light (the cast's direction matters less to the model than its size);
- focus blur, sigma 1 / 2 px at a 120 px face: fixed-focus lenses set for the counter;
- motion blur, 5 / 9 px: a shopper moving during a 1/30-1/60 s indoor exposure;
- sensor noise, std 6 / 12 of 255: small sensors at high gain in dim shops;
- JPEG quality 50 / 20: NVR snapshots and stream grabs (cameras' own defaults are 30-60);
- small faces 64 / 40 px: a wide-angle camera over the till, a shopper at the back of the
  queue; 40 px is the detectors' minimum;
- head roll 10 / 20 degrees: looking down at the card reader, tilting to the screen;
- combined mild (-0.5 stops, contrast 0.85, cast 10 %, blur 0.7, motion 3, noise 4, JPEG
  50, 100 px, roll 10) and strong (-1, 0.75, 15 %, 1, 4, 6, JPEG 35, 72 px, roll 15): a
  poor camera on an ordinary day and a bad one on a bad day, close to the issue's own
  measurement (face 90-150 px, light 0.45-1.35x, cast, blur, noise, JPEG 35-60, roll 12).
  Every strong setting at once is not a row: a dim, flat, noisy 64 px face (spread 18
  levels under noise of 9) is aged about 70 whatever its age, which no model can do
  better on; such photos are what the job's `low_quality` status is for.

Several `--model`s are measured side by side on the very same degraded faces and scenes.
`--align off` measures the crop without eye alignment (the contract before issue 28).
Skips cleanly (exit 0) without the labelled faces.

Usage: python bench/camera_quality.py [--faces ../shared/faces] [--model A --model B]
       [--n 300] [--split test|val] [--detector blazeface] [--align on|off|both]
       [--no-scenes] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from dataclasses import replace
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

CHALLENGE_AGE = 25.0
TARGETS = {"combined_ratio": 1.10, "clean_ece": 0.03, "combined_ece": 0.05}
SCENE_FACE_PX = (100, 160)  # an ordinary checkout face, around models.camera.CAMERA_FACE_PX


def conditions() -> list[tuple[str, object]]:
    """(name, Camera) rows: clean, each condition mild and strong, combined mild and strong."""
    from models.camera import COMBINED, CONDITIONS, Camera

    rows: list[tuple[str, object]] = [("clean", Camera())]
    for name, (mild, strong) in CONDITIONS.items():
        rows += [(f"{name} mild", mild), (f"{name} strong", strong)]
    rows += [(f"combined {name}", camera) for name, camera in COMBINED.items()]
    return rows


def load_faces(paths: list[Path]) -> list[np.ndarray]:
    from models.photos import decode_photo, read_photo

    return [decode_photo(read_photo(p)) for p in paths]


def crop_batch(faces: list[np.ndarray], camera, size: int, seed: int) -> np.ndarray:
    """Each face file degraded by `camera`, at the model's size, as the job's whole-image
    crop makes it (models/crop.py, identity contract)."""
    from models.camera import degrade_face
    from models.crop import DEFAULT_CONTRACTS, WHOLE_IMAGE, crop_face
    from models.faces import FaceBox

    rng = np.random.default_rng(seed)
    out = []
    for face in faces:
        seen = degrade_face(face, camera, rng)
        box = FaceBox(0, 0, seen.shape[1], seen.shape[0], 1.0)
        out.append(crop_face(seen, box, size, DEFAULT_CONTRACTS[WHOLE_IMAGE]))
    return np.stack(out)


def scene_bytes(faces: list[np.ndarray], camera, seed: int) -> list[bytes]:
    """One JPEG checkout scene per face, as `camera` takes it."""
    from demo.scenes import render_checkout_scene
    from models.camera import degrade_frame, rotate

    rng = np.random.default_rng(seed)
    out = []
    for face in faces:
        side = camera.face_px or int(rng.integers(SCENE_FACE_PX[0], SCENE_FACE_PX[1] + 1))
        turned = rotate(face, camera.roll) if camera.roll else face
        paste = "square" if rng.random() < 0.5 else "oval"
        scene = render_checkout_scene(turned, rng, face_px=side, second_face=False,
                                      paste=paste)
        frame = degrade_frame(scene.image, replace(camera, jpeg=0), rng)
        buffer = BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=camera.jpeg or 90)
        out.append(buffer.getvalue())
    return out


def measure(ages: np.ndarray, p: np.ndarray | None, real: np.ndarray, point: float,
            clean_mae: float) -> dict[str, float]:
    """The figures of one condition (NaN ages: not aged, left out of the error figures)."""
    from models.calibrate import calibration_error

    aged = ~np.isnan(ages)
    err = np.abs(ages[aged] - real[aged])
    teens = aged & (real >= 13) & (real < 18)
    adults = aged & (real >= 30)
    row = {"aged": float(aged.mean()), "mae": float(err.mean()) if err.size else float("nan")}
    row["ratio"] = row["mae"] / clean_mae
    old = aged & (real >= 65)
    row["mae_65"] = float(np.abs(ages[old] - real[old]).mean()) if old.any() else float("nan")
    if p is not None:
        row["teens"] = float((p[teens] >= point).mean()) if teens.any() else float("nan")
        row["adults"] = float((p[adults] >= point).mean()) if adults.any() else float("nan")
        row["ece"] = calibration_error(p[aged], real[aged] < CHALLENGE_AGE)
    return row


def quality_medians(crops: np.ndarray) -> tuple[float, float, float]:
    from models.quality import face_quality

    q = [face_quality(c) for c in crops]
    return (float(np.median([x.sharpness for x in q])),
            float(np.median([x.exposure_mean for x in q])),
            float(np.median([x.exposure_std for x in q])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--model", type=Path, action="append", default=None,
                        help="a model file; repeat to compare (default: the shipped model)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--split", default="test", choices=["test", "val"])
    parser.add_argument("--detector", default="blazeface")
    parser.add_argument("--align", default="on", choices=["on", "off", "both"])
    parser.add_argument("--no-scenes", action="store_true", help="crops only (fast)")
    parser.add_argument("--only", default="", help="comma-separated condition names to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    labels, images = args.faces / "labels.csv", args.faces / "final_files"
    if not labels.is_file() or not images.is_dir():
        print(f"skipped: no labelled faces at {args.faces}")
        return 0

    from jobs.scoring_setup import make_detector
    from models.crop import contract_for
    from models.labels import load_labels, split_labels
    from models.persist import load_model
    from models.score import estimate_batch, prepare_batch

    started = time.monotonic()
    models = [load_model(path) for path in (args.model or [None])]
    recipe = models[0].card.get("recipe", {})
    for other in models[1:]:
        theirs = other.card.get("recipe", {})
        if [theirs.get(k) for k in ("seed", "val_frac", "test_frac")] != [
                recipe.get(k) for k in ("seed", "val_frac", "test_frac")]:
            print(f"note: {other.version} held out a different split; the faces are "
                  f"{models[0].version}'s {args.split} split")
    frame = load_labels(labels, images).frame
    split = split_labels(frame, recipe.get("seed", 1337), recipe.get("val_frac", 0.1),
                         recipe.get("test_frac", 0.15))[args.split]
    faces_df = split.sample(min(args.n, len(split)), random_state=args.seed)
    faces_df = faces_df.reset_index(drop=True)
    real = faces_df["real_age"].to_numpy(float)
    faces = load_faces([Path(p) for p in faces_df["path"]])
    size = models[0].image_size
    if any(m.image_size != size for m in models):
        raise SystemExit("the models differ in input size; compare models of one size")
    for m in models:
        m.warm_up(32)
    rows = conditions()
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        rows = [r for r in rows if r[0] in wanted or r[0] == "clean"]
    detector = make_detector(args.detector, 40)
    detector.warm_up()
    aligns = {"on": [True], "off": [False], "both": [True, False]}[args.align]
    print(f"models {', '.join(m.version for m in models)}; {len(faces)} {args.split} faces; "
          f"detector {args.detector}; {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}")

    def predict(model, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        ages, probs, head = model.predict_all(crops, batch_size=32)
        return ages.astype(float), model.p_under(probs, head, CHALLENGE_AGE)

    results: list[dict] = []
    clean_mae: dict[str, float] = {}
    for name, camera in rows:
        # Seeded by the condition's name, so a row's faces are degraded alike whichever
        # rows run beside it (--only).
        seed = args.seed * 1_000_003 + zlib.crc32(name.encode())
        crops = crop_batch(faces, camera, size, seed)
        sharp, mean, std = quality_medians(crops)
        for model in models:
            ages, p = predict(model, crops)
            if name == "clean":
                clean_mae[model.version] = float(np.abs(ages - real).mean())
            point = float((model.card.get("calibration") or {}).get("flag_probability", 0.5))
            results.append({"condition": name, "path": "crops", "model": model.version,
                            "align": "", "sharpness": sharp, "exposure": mean, "spread": std,
                            **measure(ages, p, real, point, clean_mae[model.version])})
        if args.no_scenes:
            continue
        photos = list(enumerate(scene_bytes(faces, camera, seed)))
        for model in models:
            point = float((model.card.get("calibration") or {}).get("flag_probability", 0.5))
            for align in aligns:
                contract = contract_for(model.card, detector.name)
                if hasattr(contract, "align"):
                    contract = replace(contract, align=align)
                prepared = prepare_batch(photos, detector, size, contract)
                scored = estimate_batch(prepared, model, 32, CHALLENGE_AGE)
                ages = scored["age"].to_numpy(float)
                p = scored["p_under"].to_numpy(float)
                p = None if np.isnan(p).all() else p
                results.append({"condition": name, "path": "scenes", "model": model.version,
                                "align": "on" if align else "off",
                                **measure(ages, p, real, point, clean_mae[model.version])})
        print(f"  {name}: done ({time.monotonic() - started:.0f} s)", flush=True)

    table = pd.DataFrame(results)
    print("\nclean crop MAE: " + ", ".join(f"{v} {m:.2f}" for v, m in clean_mae.items()))
    print("ratio: MAE / the same faces' clean-crop MAE; aged: share given an age; teens, "
          "30+: share flagged at the card's operating point; ECE: calibration error of "
          f"P(under {CHALLENGE_AGE:g}); quality: median sharpness / exposure mean / spread "
          "of the crops the model saw\n")
    header = (f"{'condition':<22} {'path':<7} {'align':<5} {'model':<16} {'MAE':>6} "
              f"{'ratio':>6} {'65+':>6} {'aged':>6} {'teens':>6} {'30+':>6} {'ECE':>6}  quality")
    print(header)
    for r in table.itertuples():
        quality = (f"{r.sharpness:7.0f} {r.exposure:5.0f} {r.spread:4.0f}"
                   if r.path == "crops" else "")
        print(f"{r.condition:<22} {r.path:<7} {r.align:<5} {r.model:<16} {r.mae:6.2f} "
              f"{r.ratio:6.3f} {r.mae_65:6.2f} {r.aged:6.1%} {getattr(r, 'teens', np.nan):6.1%} "
              f"{getattr(r, 'adults', np.nan):6.1%} {getattr(r, 'ece', np.nan):6.3f}  {quality}")
    print()
    for model in models:
        mine = table[table["model"] == model.version]
        for path in ("crops", "scenes"):
            for align in sorted(mine.loc[mine["path"] == path, "align"].unique()):
                part = mine[(mine["path"] == path) & (mine["align"] == align)]
                combined = part[part["condition"].str.startswith("combined")]
                clean = part[part["condition"] == "clean"]
                if combined.empty or clean.empty:
                    continue
                worst = float(combined["ratio"].max())
                ok = "met" if worst <= TARGETS["combined_ratio"] else "NOT met"
                ece_clean, ece_comb = float(clean["ece"].iloc[0]), float(combined["ece"].max())
                print(f"{model.version} {path}{' align ' + align if align else ''}: combined "
                      f"MAE ratio up to {worst:.3f} (target <= {TARGETS['combined_ratio']}: "
                      f"{ok}); ECE clean {ece_clean:.3f} (<= {TARGETS['clean_ece']}: "
                      f"{'met' if ece_clean <= TARGETS['clean_ece'] else 'NOT met'}), "
                      f"combined up to {ece_comb:.3f} (<= {TARGETS['combined_ece']}: "
                      f"{'met' if ece_comb <= TARGETS['combined_ece'] else 'NOT met'})")
    load = os.getloadavg()[0]
    busy = (f"; the machine was busy (load {load:.1f} on {os.cpu_count()} cores)"
            if load > (os.cpu_count() or 1) + 1 else "")
    print(f"took {time.monotonic() - started:.0f} s{busy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
