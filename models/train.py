"""Fit the age model on labelled faces, with checkpoints that survive interruption.

The fit alone: the recipe (TrainConfig, the levers, the compiled losses) is in
models/recipe.py, what the run keeps in its checkpoint folder (the atomic backup, the best
weights and history, consistent after a kill) in models/checkpoints.py, and the card it
writes (final metrics, calibration, crop contracts) in models/card.py. A run started again
with ``resume=True`` continues from the last saved epoch with the same learning-rate
schedule.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from models.card import build_card, calibrate_crops, final_metrics, samples_seen
from models.checkpoints import (
    AtomicBackup,
    EpochRecords,
    adopt_legacy_best,
    best_epoch,
    best_weights_path,
)
from models.recipe import (
    SAMPLE_WEIGHTS,
    TrainConfig,
    TrainingError,
    compile_model,
    training_targets,
)


@dataclass
class TrainResult:
    model_path: Path
    history: pd.DataFrame
    metrics: dict[str, Any]


def use_mixed_precision() -> bool:
    """Mixed precision pays off on a GPU only; CPUs compute float16 slowly."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


class TimeBudget(keras.callbacks.Callback):
    """Stop at an epoch boundary when the next epoch would overrun the budget."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.minutes = minutes

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()
        self.epoch_start = self.start

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.monotonic()
        if self.epoch_start > self.start + self.minutes * 60:
            # Already over budget (e.g. `--resume --max-minutes 0.01` to rewrite a
            # finished run's model with the current card): Keras stops after the
            # first batch, and the best weights, not these, are what is saved.
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        now = time.monotonic()
        if now + (now - self.epoch_start) > self.start + self.minutes * 60:
            self.model.stop_training = True


class AgeMetricNames(keras.callbacks.Callback):
    """A model with two outputs logs its age metric as ``age_probs_mae``; early stopping,
    the best weights and the history all read ``mae`` / ``val_mae``, so name it so first."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            for prefix in ("", "val_"):
                if f"{prefix}age_probs_mae" in logs:
                    logs[f"{prefix}mae"] = logs[f"{prefix}age_probs_mae"]


def train(
    frame: pd.DataFrame,
    out_path: Path,
    checkpoint_dir: Path,
    config: TrainConfig = TrainConfig(),  # noqa: B008 (frozen: one shared default is safe)
    *,
    backbone_weights: Path | None = None,
    init_from: Path | None = None,
    resume: bool = False,
    max_minutes: float | None = None,
    card_extra: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on ``frame`` (file_name, real_age, path, ...) and save the best model."""
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
        camera_prob=config.camera_prob,
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
        compile_model(train_model, config, 1e-3, config.head)
        log(f"phase 1: head only, {config.freeze_epochs} epoch(s)")
        train_model.fit(train_ds, epochs=config.freeze_epochs, steps_per_epoch=steps,
                        validation_data=val_ds, verbose=2)
        backbone.trainable = True
    compile_model(train_model, config, schedule, config.head)
    train_model.build((None, config.image_size, config.image_size, 3))

    callbacks = [
        AgeMetricNames(),
        # Before the backup: its end-of-epoch writes must come first (see EpochRecords).
        EpochRecords(checkpoint_dir),
        # Each file written aside and renamed; the previous backup kept (double_checkpoint),
        # so a damaged one falls back to the epoch before.
        AtomicBackup(backup_dir),
        keras.callbacks.TerminateOnNaN(),
    ]
    if not config.ema:  # the moving average is taken whole at the end, not the best epoch
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_mae", mode="min",
                                                       patience=config.patience))
    if max_minutes:
        callbacks.append(TimeBudget(max_minutes))
    started = time.monotonic()
    train_model.fit(
        train_ds, epochs=config.epochs, steps_per_epoch=steps, validation_data=val_ds,
        callbacks=callbacks, verbose=2,
    )
    wall = time.monotonic() - started

    history = pd.read_csv(history_csv) if history_csv.is_file() else pd.DataFrame()
    best = best_epoch(history.to_dict("records"))
    adopt_legacy_best(checkpoint_dir, best)  # a finished run of the old code trains no epoch
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
    metrics, calibration = final_metrics(age_model, val_df, test_df, config)
    if config.ema and len(history):
        metrics["val_mae_raw_last_epoch"] = round(float(history["val_mae"].iloc[-1]), 3)
    log(f"best validation MAE {metrics['val_mae']:.2f} years; test MAE {metrics['test_mae']}")
    crop = calibrate_crops(train_df, config.seed, log=log)
    card = build_card(config, backbone_weights=backbone_weights, parent=parent,
                      history=history, wall=wall, steps=steps,
                      faces={"train": len(train_df), "val": len(val_df),
                             "test": len(test_df)},
                      mixed=mixed, metrics=metrics, crop=crop, calibration=calibration,
                      card_extra=card_extra)
    save_model(age_model, out_path, card)
    # The confusion over ages the marketing estimates correct with (models/confusion.py):
    # measured on the validation faces as checkout scenes, through the job's own path.
    from models.confusion import add_to_model

    add_to_model(Path(out_path), val_df, log=log)
    _plot_curves(history, checkpoint_dir / "learning_curves.png")
    return TrainResult(Path(out_path), history, metrics)


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
