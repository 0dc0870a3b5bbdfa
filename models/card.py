"""The model card a training run writes beside the weights: the recipe and lineage, the
final metrics on the validation and test faces, the Challenge 25 calibration fitted on
validation faces, and each detector's crop contract fitted on training faces.

Scoring reads these records back (models/persist.py); they are measured here, after the fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.recipe import TrainConfig, levers

# Trained models predict with the mirror average (models.persist.AgeModel): their card says
# so, and its figures are measured that way.
MIRROR_AVERAGE = True


def build_card(config: TrainConfig, *, backbone_weights: Path | None,
               parent: dict[str, Any] | None, history: pd.DataFrame, wall: float,
               steps: int, faces: dict[str, int], mixed: bool, metrics: dict[str, Any],
               crop: dict[str, Any], calibration: dict[str, Any] | None,
               card_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card of a finished run; `faces` counts the train, val and test faces."""
    return {
        "version": time.strftime("%Y%m%d-%H%M%S"),
        "architecture": "ResNet50 (include_top=False, global average pooling) + "
        + ("softmax over ages 0-100, expected value (DEX)" if config.head == "dex"
           else "Dense(1, relu)"),
        "preprocessing": "RGB 0-255 in; scaling inside the model",
        "prediction": {"mirror_average": MIRROR_AVERAGE,
                       "note": "each age is the mean of the estimates for the face and its "
                               "mirror image; the metrics below were measured so"},
        "recipe": {**asdict(config), "optimizer": "AdamW + cosine decay with warmup",
                   "augmentation": "flip; half the faces placed on a random background "
                                   "canvas and cut out with scale +-15 %, shift +-10 %, "
                                   "rotation +-10 deg (detector jitter around the crop "
                                   "contract), half cropped +-10 % inside the file; 1/5 "
                                   "softened; brightness, contrast, saturation, 10% grayscale"
                                   + camera_augmentation(config.camera_prob),
                   "camera_conditions": camera_conditions(config.camera_prob),
                   "backbone_init": str(backbone_weights) if backbone_weights else "random",
                   "init_from": parent,
                   "levers": levers(config)},
        "training": {"epochs_run": int(len(history)), "wall_seconds_last_session": round(wall),
                     "samples_seen": int(len(history)) * steps * config.batch_size
                     + int((parent or {}).get("samples_seen") or 0),
                     "train_faces": faces["train"], "val_faces": faces["val"],
                     "test_faces": faces["test"], "mixed_precision": mixed,
                     "device": "GPU" if mixed else "CPU"},
        "metrics": metrics,
        "crop": crop,
        **({"calibration": calibration} if calibration else {}),
        **(card_extra or {}),
    }


def camera_augmentation(prob: float) -> str:
    """The augmentation text's camera part (issue 28), empty when off."""
    if prob <= 0:
        return ""
    return (f"; {prob:.0%} of faces as a cheap checkout camera takes them (models/camera.py: "
            "exposure, contrast, colour cast, focus and motion blur, sensor noise, JPEG, "
            "small faces, head roll; see camera_conditions)")


def camera_conditions(prob: float) -> dict[str, Any] | None:
    """The camera conditions trained on, for the card: what share of faces, each
    condition's chance and range (models/camera.py); None when off."""
    from models.camera import RANGE_PROB, RANGES

    if prob <= 0:
        return None
    return {"share_of_faces": prob, "each_condition_prob": RANGE_PROB,
            "ranges": {k: list(v) for k, v in RANGES.items()},
            "bench": "bench/camera_quality.py measures the same conditions"}


CALIBRATION_FACES = 400


def calibrate_crops(train_df: pd.DataFrame, seed: int,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """The crop contract of each detector for this training framing (models/crop.py), fitted
    on training faces, for the card: scoring cuts exactly this square around a detector's
    box. A detector that cannot be loaded or calibrated is left out (its calibrated default
    then applies) and said so."""
    from models.blazeface import BlazeFaceDetector
    from models.crop import WHOLE_IMAGE, CropContract, calibrate
    from models.mtcnn import MtcnnDetector
    from models.photos import PhotoError, decode_photo, read_photo

    out = {WHOLE_IMAGE: {**CropContract(WHOLE_IMAGE, 1.0).to_card(),
                         "note": "photos that are face files: the file is the square"}}
    if len(train_df) < CALIBRATION_FACES // 4:
        log(f"crop contracts: {len(train_df)} training faces are too few to fit them; the "
            "calibrated defaults (models/crop.py) apply")
        return out
    sample = train_df.sample(min(CALIBRATION_FACES, len(train_df)), random_state=seed)
    faces = []
    for path in sample["path"]:
        try:
            faces.append(decode_photo(read_photo(Path(path))))
        except PhotoError:
            continue
    for detector in (BlazeFaceDetector(), MtcnnDetector()):
        try:
            contract = calibrate(detector, faces, seed=seed)
        except (ValueError, ImportError, OSError) as exc:
            log(f"crop contract for {detector.name}: not calibrated ({exc})")
            continue
        log(f"crop contract for {detector.name}: side {contract.scale:.3f} x box, centre "
            f"{contract.dx:+.3f}, {contract.dy:+.3f} ({contract.faces} faces)"
            f"{', eyes levelled' if contract.align else ''}")
        out[detector.name] = contract.to_card()
    return out


def samples_seen(card: dict[str, Any]) -> int | None:
    """Faces a model has trained on, over all the runs it descends from."""
    training, recipe = card.get("training", {}), card.get("recipe", {})
    if training.get("samples_seen") is not None:
        return int(training["samples_seen"])
    if recipe.get("steps_per_epoch") and recipe.get("batch_size") and training.get("epochs_run"):
        return int(training["epochs_run"] * recipe["steps_per_epoch"] * recipe["batch_size"])
    return None


def final_metrics(age_model, val_df, test_df, config: TrainConfig
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(metrics, calibration): errors on the validation and test splits, and, for a model
    with an age distribution, the temperature and Challenge 25 operating point fitted on
    validation faces (models/calibrate.py) with their figures on the test faces."""
    from models.calibrate import (
        calibrate_card,
        calibration_error,
        flag_rates,
        p_under,
        with_logit_temperature,
        with_temperature,
    )
    from models.persist import AgeModel
    from models.predict import predict_files_all

    model = AgeModel(age_model, mirror=MIRROR_AVERAGE)  # as the card will say; T = 1
    out: dict[str, Any] = {}
    probs: dict[str, np.ndarray | None] = {}
    heads: dict[str, np.ndarray | None] = {}
    for name, df in (("val", val_df), ("test", test_df)):
        if len(df) == 0:
            out[f"{name}_mae"] = None
            continue
        pred, probs[name], heads[name] = predict_files_all(model, df["path"].tolist(),
                                                           batch_size=config.batch_size)
        out[f"{name}_mae"] = round(float(np.mean(np.abs(pred - df["real_age"].to_numpy()))), 3)
        out[f"{name}_n"] = len(df)
        if name == "val":
            out["by_band"] = _bands(df["real_age"], pred)
    if probs.get("val") is None:
        return out, None
    calibration = calibrate_card(probs["val"], val_df["real_age"].to_numpy(float),
                                 under_head=heads.get("val"))
    # With the weight average the run ships its last weights: validation chose nothing, so
    # the operating point fitted on it is out of sample.
    calibration["validation_used_for_early_stopping"] = not config.ema
    if probs.get("test") is not None:
        ages = test_df["real_age"].to_numpy(float)
        if calibration["source"] == "under_head":
            p = with_logit_temperature(heads["test"], calibration["under_head"]["temperature"])
        else:
            p = p_under(with_temperature(probs["test"], calibration["temperature"]),
                        calibration["challenge_age"])
        calibration["test"] = {
            "n": len(ages),
            "calibration_error": round(calibration_error(p, ages < calibration["challenge_age"]),
                                       4),
            "flag_rates_at_operating_point": flag_rates(p, ages,
                                                        calibration["flag_probability"]),
        }
    return out, calibration


def _bands(real: pd.Series, pred: np.ndarray) -> dict[str, Any]:
    """Validation error per true-age band: the compliance report turns it into expected
    false flags, so the card must carry it (held-out faces, not the training split)."""
    from models.evaluate import evaluate_ages

    frame = pd.DataFrame({"real_age": real.to_numpy(), "pred_age": pred})
    return evaluate_ages(frame)["by_band"]
