"""Fit the age model on labelled faces, with checkpoints that survive interruption.

Everything that must outlive a killed process lives in ``checkpoint_dir`` (outside git):
the latest weights and optimizer state (Keras' BackupAndRestore), the best weights by
validation MAE, the per-epoch history CSV and the config the run was started with. A run
started again with ``resume=True`` continues from the last saved epoch with the same
learning-rate schedule; history and best weights are rolled back to that epoch, so the three
always agree (``_EpochRecords``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Trained models predict with the mirror average (models.persist.AgeModel): their card says
# so, and its figures are measured that way.
MIRROR_AVERAGE = True


class TrainingError(RuntimeError):
    """Training cannot start or continue as asked."""


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Defaults are what the shipped model was trained with."""

    image_size: int = 64
    head: str = "dex"
    batch_size: int = 64
    epochs: int = 30
    steps_per_epoch: int | None = None  # None: one pass over the training split
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: int = 1
    freeze_epochs: int = 2  # only with pretrained backbone weights: train the head first
    patience: int = 8
    seed: int = 1337
    val_frac: float = 0.1
    test_frac: float = 0.15
    # Issue 19's levers (models/imbalance.py, models/build.py); off by default.
    sample_weights: str = "none"  # "lds" or "under25": per-face weights on the age loss
    under_age: float | None = None  # a second output P(age < under_age), BCE toward 13-30
    ema: float = 0.0  # > 0: the shipped weights are this momentum's moving average (no
    #                   early stopping: the final average, so validation picks nothing)


SAMPLE_WEIGHTS = ("none", "lds", "under25")
UNDER25_BANDS = {(0.0, 25.0): 2.0}  # "under25": the under-25s count twice in the age loss


@dataclass
class TrainResult:
    model_path: Path
    history: pd.DataFrame
    metrics: dict[str, Any]


def use_mixed_precision() -> bool:
    """Mixed precision pays off on a GPU only; CPUs compute float16 slowly."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _compile(train_model, config: TrainConfig, learning_rate, head: str) -> None:
    import keras

    from models.build import UNDER_HEAD, dex_loss, expected_age_mae, under_loss

    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=config.weight_decay, clipnorm=1.0,
        use_ema=config.ema > 0, ema_momentum=config.ema or 0.99,
    )
    if head == "dex" and config.under_age is not None:
        mae = keras.metrics.MeanMetricWrapper(expected_age_mae, name="mae")
        train_model.compile(optimizer=optimizer,
                            loss={"age_probs": dex_loss(), UNDER_HEAD: under_loss},
                            metrics={"age_probs": [mae]})
    elif head == "dex":
        mae = keras.metrics.MeanMetricWrapper(expected_age_mae, name="mae")
        train_model.compile(optimizer=optimizer, loss=dex_loss(), metrics=[mae])
    else:
        train_model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])


class _TimeBudget:
    """Stop at an epoch boundary when the next epoch would overrun the budget."""

    def __new__(cls, minutes: float):
        import keras

        class TimeBudget(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.start = time.monotonic()
                self.epoch_start = self.start

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch_start = time.monotonic()
                if self.epoch_start > self.start + minutes * 60:
                    # Already over budget (e.g. `--resume --max-minutes 0.01` to rewrite a
                    # finished run's model with the current card): Keras stops after the
                    # first batch, and the best weights, not these, are what is saved.
                    self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                now = time.monotonic()
                if now + (now - self.epoch_start) > self.start + minutes * 60:
                    self.model.stop_training = True

        return TimeBudget()


class _AgeMetricNames:
    """A model with two outputs logs its age metric as ``age_probs_mae``; early stopping,
    the best weights and the history all read ``mae`` / ``val_mae``, so name it so first."""

    def __new__(cls):
        import keras

        class AgeMetricNames(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if logs is not None:
                    for prefix in ("", "val_"):
                        if f"{prefix}age_probs_mae" in logs:
                            logs[f"{prefix}mae"] = logs[f"{prefix}age_probs_mae"]

        return AgeMetricNames()


class _AtomicBackup:
    """Keras' BackupAndRestore, with each of its files written aside and renamed into place.

    Keras writes the weights and the epoch metadata in place; a kill in the middle of the
    metadata write leaves a cut-short JSON that --resume cannot read, and the resume is lost.
    Here every file (the backup, its previous copy, the metadata) is whole or not there.
    """

    def __new__(cls, backup_dir: Path):
        import keras

        class AtomicBackup(keras.callbacks.BackupAndRestore):
            def _save_model(self):
                Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
                weights = Path(self._weights_path)
                metadata = Path(self._training_metadata_path)
                if weights.is_file():
                    _copy_whole(weights, Path(self._prev_weights_path))
                if metadata.is_file():
                    _copy_whole(metadata, Path(self._prev_training_metadata_path))
                aside = weights.with_name(f".{weights.name}.tmp.weights.h5")
                self.model.save_weights(filepath=str(aside), overwrite=True)
                _fsync_replace(aside, weights)
                _write_whole(metadata, json.dumps(
                    {"epoch": self._current_epoch, "batch": self._last_batch_seen}))

        return AtomicBackup(str(backup_dir), delete_checkpoint=False, double_checkpoint=True)


def _write_whole(path: Path, text: str) -> None:
    aside = path.with_name(f".{path.name}.tmp")
    aside.write_text(text)
    _fsync_replace(aside, path)


def _copy_whole(source: Path, target: Path) -> None:
    aside = target.with_name(f".{target.name}.tmp{''.join(target.suffixes[-2:])}")
    shutil.copyfile(source, aside)
    _fsync_replace(aside, target)


class _EpochRecords:
    """The history CSV and the best weights, kept consistent with Keras' backup.

    BackupAndRestore's backup is the commit point: a resumed run starts after the last epoch
    it holds. This callback runs just before it at each epoch's end and writes, each whole
    (aside, flushed, renamed): the epoch's best weights when val_mae improved, named by
    epoch (``best-e0007.weights.h5``), then the whole history. A kill between these writes
    and the backup's leaves records of an epoch the backup does not hold; the resumed run
    drops them at its first epoch (history rows and best files from that epoch on), so the
    history always lists exactly the backed-up epochs and the best weights are those of its
    lowest val_mae. (Before, the history row came after the backup, and a kill in between
    lost it.) Superseded best files are deleted once two later epochs are backed up
    (double_checkpoint may fall back one epoch).
    """

    def __new__(cls, checkpoint_dir: Path):
        import keras

        class EpochRecords(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.rows: list[dict[str, Any]] | None = None

            def on_epoch_begin(self, epoch, logs=None):
                if self.rows is None:  # the first epoch of this session: roll back to it
                    self.rows = [r for r in _read_history(checkpoint_dir) if r["epoch"] < epoch]
                    _write_history(checkpoint_dir, self.rows)
                    _adopt_legacy_best(checkpoint_dir, best_epoch(self.rows))
                    for f in _best_files(checkpoint_dir):
                        if _best_epoch(f) >= epoch:
                            f.unlink()
                keep = best_epoch([r for r in self.rows if r["epoch"] < epoch - 1])
                for f in _best_files(checkpoint_dir):
                    if _best_epoch(f) < epoch - 1 and _best_epoch(f) != keep:
                        f.unlink()

            def on_epoch_end(self, epoch, logs=None):
                assert self.rows is not None
                row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
                value = row.get("val_mae")
                previous = best_epoch(self.rows)
                best = math.inf if previous is None else next(
                    r["val_mae"] for r in self.rows if r["epoch"] == previous)
                if value is not None and value < best:  # NaN never counts as better
                    path = best_weights_path(checkpoint_dir, epoch)
                    # Keras only writes weights to names ending in .weights.h5.
                    aside = path.with_name(f".{path.name}.tmp.weights.h5")
                    self.model.save_weights(str(aside), overwrite=True)
                    _fsync_replace(aside, path)
                self.rows.append(row)
                _write_history(checkpoint_dir, self.rows)

        return EpochRecords()


def _adopt_legacy_best(checkpoint_dir: Path, epoch: int | None) -> None:
    """A run checkpointed before best files were named by epoch kept one `best.weights.h5`:
    resumed now, it becomes the file of the history's best epoch."""
    legacy = Path(checkpoint_dir) / "best.weights.h5"
    if epoch is not None and legacy.is_file() and not _best_files(checkpoint_dir):
        os.replace(legacy, best_weights_path(checkpoint_dir, epoch))


def best_weights_path(checkpoint_dir: Path, epoch: int) -> Path:
    return Path(checkpoint_dir) / f"best-e{epoch:04d}.weights.h5"


def best_epoch(rows: list[dict[str, Any]]) -> int | None:
    """The epoch with the lowest val_mae (the first of equals), or None."""
    scored = [r for r in rows if r.get("val_mae") is not None and r["val_mae"] == r["val_mae"]]
    return min(scored, key=lambda r: (r["val_mae"], r["epoch"]))["epoch"] if scored else None


def _best_files(checkpoint_dir: Path) -> list[Path]:
    return sorted(Path(checkpoint_dir).glob("best-e*.weights.h5"))


def _best_epoch(path: Path) -> int:
    return int(path.name.removeprefix("best-e").split(".", 1)[0])


def _read_history(checkpoint_dir: Path) -> list[dict[str, Any]]:
    path = Path(checkpoint_dir) / "history.csv"
    if not path.is_file() or path.stat().st_size == 0:
        return []
    return pd.read_csv(path).to_dict("records")


def _write_history(checkpoint_dir: Path, rows: list[dict[str, Any]]) -> None:
    path = Path(checkpoint_dir) / "history.csv"
    aside = path.with_name(f".{path.name}.tmp")
    pd.DataFrame(rows, columns=_columns(rows)).to_csv(aside, index=False)
    _fsync_replace(aside, path)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    keys = sorted({k for r in rows for k in r} - {"epoch"})
    return ["epoch", *keys]


def _fsync_replace(aside: Path, path: Path) -> None:
    with open(aside, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(aside, path)


def train(
    frame: pd.DataFrame,
    out_path: Path,
    checkpoint_dir: Path,
    config: TrainConfig = TrainConfig(),
    *,
    backbone_weights: Path | None = None,
    init_from: Path | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    card_extra: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on ``frame`` (file_name, real_age, path, ...) and save the best model."""
    import keras

    from models.build import build_model, reestimate_batchnorm
    from models.data import face_dataset
    from models.labels import split_labels
    from models.persist import save_model

    checkpoint_dir = Path(checkpoint_dir)
    config_file = checkpoint_dir / "config.json"
    backup_dir = checkpoint_dir / "backup"
    if backbone_weights and init_from:
        raise TrainingError("give --backbone-weights or --init-from, not both")
    wanted = {**asdict(config), "backbone_weights": str(backbone_weights or ""),
              "init_from": str(init_from or "")}
    if backup_dir.exists() and not resume:
        raise TrainingError(
            f"{checkpoint_dir} already holds a run; pass --resume to continue it "
            "or choose another checkpoint folder"
        )
    if config.sample_weights not in SAMPLE_WEIGHTS:
        raise TrainingError(f"sample weights must be one of {SAMPLE_WEIGHTS}")
    if config.head != "dex" and (config.sample_weights != "none" or config.under_age):
        raise TrainingError("sample weights and the P(under) head need the dex head")
    if resume and config_file.is_file():
        started = {**asdict(TrainConfig()), **json.loads(config_file.read_text())}
        changed = sorted(k for k in wanted if started.get(k) != wanted[k])
        if changed:
            raise TrainingError(
                f"cannot resume: the run in {checkpoint_dir} used different "
                f"{', '.join(changed)}"
            )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(wanted, indent=2))

    splits = split_labels(frame, config.seed, config.val_frac, config.test_frac)
    train_df, val_df, test_df = splits["train"], splits["val"], splits["test"]
    if len(train_df) < config.batch_size or len(val_df) == 0:
        raise TrainingError(
            f"too few usable faces to train: {len(train_df)} train, {len(val_df)} validation"
        )
    steps = config.steps_per_epoch or math.ceil(len(train_df) / config.batch_size)
    mixed = use_mixed_precision()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(config.seed)
    log(
        f"training on {len(train_df)} faces, validating on {len(val_df)}, "
        f"holding out {len(test_df)}; {steps} steps/epoch; "
        f"{'GPU, mixed precision' if mixed else 'CPU, float32'}"
    )

    train_ds = face_dataset(
        train_df["path"].tolist(), training_targets(train_df["real_age"], config),
        config.image_size, config.batch_size, training=True, seed=config.seed,
    )
    val_ds = face_dataset(
        val_df["path"].tolist(), training_targets(val_df["real_age"], config),
        config.image_size, config.batch_size,
    )
    train_model, age_model = build_model(
        config.image_size, head=config.head, backbone_weights=backbone_weights,
        under_age=config.under_age,
    )
    parent = warm_start(age_model, init_from, config) if init_from else None
    total_steps = steps * config.epochs
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.learning_rate * 0.05,
        decay_steps=max(1, total_steps - steps * config.warmup_epochs),
        alpha=0.01,
        warmup_target=config.learning_rate,
        warmup_steps=steps * config.warmup_epochs,
    )

    history_csv = checkpoint_dir / "history.csv"
    if backbone_weights and not resume and config.freeze_epochs:
        # Pretrained backbone: fit the new head first so its random gradients do not wreck
        # the pretrained features, then fine-tune everything (Keras transfer-learning guide).
        backbone = train_model.get_layer("resnet50")
        backbone.trainable = False
        _compile(train_model, config, 1e-3, config.head)
        log(f"phase 1: head only, {config.freeze_epochs} epoch(s)")
        train_model.fit(train_ds, epochs=config.freeze_epochs, steps_per_epoch=steps,
                        validation_data=val_ds, verbose=2)
        backbone.trainable = True
    _compile(train_model, config, schedule, config.head)
    train_model.build((None, config.image_size, config.image_size, 3))

    callbacks = [
        _AgeMetricNames(),
        # Before the backup: its end-of-epoch writes must come first (see _EpochRecords).
        _EpochRecords(checkpoint_dir),
        # Each file written aside and renamed; the previous backup kept (double_checkpoint),
        # so a damaged one falls back to the epoch before.
        _AtomicBackup(backup_dir),
        keras.callbacks.TerminateOnNaN(),
    ]
    if not config.ema:  # the moving average is taken whole at the end, not the best epoch
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_mae", mode="min",
                                                       patience=config.patience))
    if max_minutes:
        callbacks.append(_TimeBudget(max_minutes))
    started = time.monotonic()
    train_model.fit(
        train_ds, epochs=config.epochs, steps_per_epoch=steps, validation_data=val_ds,
        callbacks=callbacks, verbose=2,
    )
    wall = time.monotonic() - started

    history = pd.read_csv(history_csv) if history_csv.is_file() else pd.DataFrame()
    best = best_epoch(history.to_dict("records"))
    _adopt_legacy_best(checkpoint_dir, best)  # a finished run of the old code trains no epoch
    if best is None or not best_weights_path(checkpoint_dir, best).is_file():
        raise TrainingError("training produced no checkpoint (no epoch finished)")
    if config.ema:
        # fit() ended by swapping the moving average into the weights; BatchNorm statistics
        # belong to the last raw weights, so estimate them again for the averaged ones.
        reestimate_batchnorm(train_model, (x for x, _ in train_ds.take(32)))
        log("weights: the moving average of the last steps (ema "
            f"{config.ema}); BatchNorm statistics re-estimated on 32 training batches")
    else:
        train_model.load_weights(str(best_weights_path(checkpoint_dir, best)))
    metrics, calibration = _final_metrics(age_model, val_df, test_df, config)
    if config.ema and len(history):
        metrics["val_mae_raw_last_epoch"] = round(float(history["val_mae"].iloc[-1]), 3)
    log(f"best validation MAE {metrics['val_mae']:.2f} years; test MAE {metrics['test_mae']}")
    crop = calibrate_crops(train_df, config.seed, log=log)
    card = {
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
                                   "softened; brightness, contrast, saturation, 10% grayscale",
                   "backbone_init": str(backbone_weights) if backbone_weights else "random",
                   "init_from": parent,
                   "levers": _levers(config)},
        "training": {"epochs_run": int(len(history)), "wall_seconds_last_session": round(wall),
                     "samples_seen": int(len(history)) * steps * config.batch_size
                     + int((parent or {}).get("samples_seen") or 0),
                     "train_faces": len(train_df), "val_faces": len(val_df),
                     "test_faces": len(test_df), "mixed_precision": mixed,
                     "device": "GPU" if mixed else "CPU"},
        "metrics": metrics,
        "crop": crop,
        **({"calibration": calibration} if calibration else {}),
        **(card_extra or {}),
    }
    save_model(age_model, out_path, card)
    _plot_curves(history, checkpoint_dir / "learning_curves.png")
    return TrainResult(Path(out_path), history, metrics)


def training_targets(ages: pd.Series, config: TrainConfig) -> Any:
    """What the losses compare the outputs with, each target with its per-face weight
    (models/build.py): the ages alone without levers; ``[age, weight]`` with
    ``sample_weights`` "lds" or "under25"; with the P(under) head, a dict with its
    ``[is_under, weight]`` beside, weighted toward the ages either side of the line
    (models/imbalance.py)."""
    from models.build import UNDER_HEAD
    from models.imbalance import band_weights, lds_weights

    ages = ages.to_numpy(np.float32)
    if config.sample_weights == "none" and config.under_age is None:
        return ages
    weight = {"lds": lds_weights, "under25": lambda a: band_weights(a, UNDER25_BANDS),
              "none": np.ones_like}[config.sample_weights](ages)
    age_target = np.stack([ages, weight], axis=1)
    if config.under_age is None:
        return age_target
    under = (ages < config.under_age).astype(np.float32)
    return {"age_probs": age_target,
            UNDER_HEAD: np.stack([under, band_weights(ages)], axis=1)}


def _levers(config: TrainConfig) -> dict[str, Any]:
    """The card's plain-words record of which of issue 19's levers this run used."""
    from models.imbalance import DECISION_BANDS

    return {
        "sample_weights": {"none": "none", "lds": "label-distribution smoothing (Gaussian "
                           "sigma 2 y, inverse square root, capped at 5x)",
                           "under25": "faces under 25 weigh 2x in the age loss"
                           }[config.sample_weights],
        "under_head": None if config.under_age is None else {
            "age": config.under_age, "loss": "binary cross-entropy",
            "weights": {f"{lo:g}-{hi:g}": w for (lo, hi), w in DECISION_BANDS.items()}},
        "weight_average": (f"EMA of the weights, momentum {config.ema}, BatchNorm "
                           "re-estimated" if config.ema else "none (best epoch)"),
    }


CALIBRATION_FACES = 400


def calibrate_crops(train_df: pd.DataFrame, seed: int,
                    log: Callable[[str], None] = print) -> dict[str, Any]:
    """The crop contract of each detector for this training framing (models/crop.py), fitted
    on training faces, for the card: scoring cuts exactly this square around a detector's
    box. A detector that cannot be loaded or calibrated is left out (its calibrated default
    then applies) and said so."""
    from models.blazeface import BlazeFaceDetector
    from models.crop import WHOLE_IMAGE, CropContract, calibrate
    from models.faces import MtcnnDetector, PhotoError, decode_photo, read_photo

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
            f"{contract.dx:+.3f}, {contract.dy:+.3f} ({contract.faces} faces)")
        out[detector.name] = contract.to_card()
    return out


def warm_start(age_model, init_from: Path, config: TrainConfig) -> dict[str, Any]:
    """Copy a saved model's weights into ``age_model`` to continue training it.

    Checkpoints live outside git and may be gone; the committed model is not. Starting from
    it (with a fresh optimizer and schedule) is how training continues across machines.
    Returns the parent's identity for the new card.
    The network is fully convolutional, so a model trained at one size starts a run at
    another (progressive resizing; BatchNorm statistics adapt as the run trains). A head the
    parent lacks (the P(under) head) starts from random weights; every other layer must be
    there with the same shapes.
    """
    from models.build import UNDER_HEAD
    from models.persist import load_model

    parent = load_model(init_from)
    theirs = {layer.name: layer for layer in parent.keras_model.layers}
    parent_head = "dex" if "age_probs" in theirs else "regression"
    if parent_head != config.head:
        raise TrainingError(
            f"cannot start from {init_from}: it is a {parent_head} model, this run asks for "
            f"{config.head}"
        )
    for layer in age_model.layers:
        if layer.name in theirs:
            layer.set_weights(theirs[layer.name].get_weights())
        elif layer.weights and layer.name != UNDER_HEAD:
            raise TrainingError(f"cannot start from {init_from}: it has no layer {layer.name}")
    return {"path": str(init_from), "version": parent.version, "image_size": parent.image_size,
            "samples_seen": samples_seen(parent.card)}


def samples_seen(card: dict[str, Any]) -> int | None:
    """Faces a model has trained on, over all the runs it descends from."""
    training, recipe = card.get("training", {}), card.get("recipe", {})
    if training.get("samples_seen") is not None:
        return int(training["samples_seen"])
    if recipe.get("steps_per_epoch") and recipe.get("batch_size") and training.get("epochs_run"):
        return int(training["epochs_run"] * recipe["steps_per_epoch"] * recipe["batch_size"])
    return None


def _final_metrics(age_model, val_df, test_df, config: TrainConfig
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


def _plot_curves(history: pd.DataFrame, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epochs = np.arange(1, len(history) + 1)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "mae", "MAE (years)")):
        ax.plot(epochs, history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
