"""The training recipe: its settings (TrainConfig), issue 19's levers (sample weights, the
P(under) head, the weight average), the targets they need and the compiled losses.

Apart from the fit (models/train.py) so that a reader, a test or the card can take the
recipe without the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


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
    # Issue 28: the share of training faces degraded as a cheap checkout camera degrades
    # them (models/camera.py's conditions, strengths from its RANGES; models/data.py).
    camera_prob: float = 0.0


SAMPLE_WEIGHTS = ("none", "lds", "under25")
UNDER25_BANDS = {(0.0, 25.0): 2.0}  # "under25": the under-25s count twice in the age loss


def compile_model(train_model, config: TrainConfig, learning_rate, head: str) -> None:
    """Compile with the recipe's optimizer (AdamW, clipped, with the weight average when
    `config.ema`), the head's losses and the age MAE that early stopping reads."""
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


def levers(config: TrainConfig) -> dict[str, Any]:
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
