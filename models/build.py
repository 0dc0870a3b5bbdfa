"""The age model: the study's ResNet50 backbone with a choice of head.

Two heads share one backbone:
- ``regression``: the study's Dense(1) trained with MSE, kept for comparison.
- ``dex``: a softmax over whole-year ages whose expected value is the estimate (DEX,
  Rothe et al. 2015). Trained on a Gaussian label distribution plus an L1 term on the
  expectation; it learns faster from scratch and is less pulled by noisy labels than MSE.

A dex model may carry a second output made for the Challenge 25 decision: ``p_under``, a
sigmoid P(age < `under_age`) on the same pooled features, trained with binary cross-entropy
weighted toward the ages on either side of the line (models/imbalance.py). The expected age
serves marketing; this head serves compliance, where the question is yes or no.

Targets may carry their own weight as a second column (``[age, weight]``), so one dataset of
(image, targets) pairs feeds any number of heads, each with its own per-face weights.

Pixel scaling lives inside the model (a serializable layer, not a Lambda), so callers feed
raw RGB values in [0, 255] and a saved model cannot be fed with the wrong preprocessing.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

MAX_AGE = 100  # the dex head covers 0..MAX_AGE; older labels are clipped for the loss only
HEADS = ("dex", "regression")
UNDER_HEAD = "p_under"  # the name of the P(age < under_age) output


@keras.saving.register_keras_serializable(package="ageseg")
class AgePreprocess(layers.Layer):
    """Scale [0, 255] RGB the way the backbone expects.

    ``caffe`` matches ImageNet ResNet50 weights (BGR, mean-subtracted); ``symmetric`` maps to
    [-1, 1], which suits training from scratch.
    """

    CAFFE_MEAN = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "symmetric", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "symmetric"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)
            return x - ops.convert_to_tensor(self.CAFFE_MEAN, dtype=self.compute_dtype)
        return x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="ageseg")
class ExpectedAge(layers.Layer):
    """Turn a distribution over whole-year ages into its mean, in years."""

    def call(self, probs):
        ages = ops.arange(ops.shape(probs)[-1], dtype="float32")
        return ops.sum(ops.cast(probs, "float32") * ages, axis=-1, keepdims=True)


def build_backbone(image_size: int, backbone_weights: Path | None) -> keras.Model:
    """ResNet50 without its classifier. Weights come only from a local file, never a hub."""
    if backbone_weights is not None and not Path(backbone_weights).is_file():
        raise FileNotFoundError(f"backbone weights file not found: {backbone_weights}")
    return keras.applications.ResNet50(
        include_top=False,
        weights=str(backbone_weights) if backbone_weights else None,
        input_shape=(image_size, image_size, 3),
        pooling="avg",
    )


def build_model(
    image_size: int = 64,
    *,
    head: str = "dex",
    backbone_weights: Path | None = None,
    under_age: float | None = None,
) -> tuple[keras.Model, keras.Model]:
    """Return ``(train_model, age_model)`` sharing all layers.

    ``age_model`` maps RGB images to ages in years, shape (N, 1) (with ``under_age``: also
    P(age < under_age), shape (N, 1)); it is what gets saved and served. ``train_model``
    exposes what the losses need: the age distribution for ``dex`` (and ``p_under``), the
    age itself for ``regression``.
    """
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, not {head!r}")
    if under_age is not None and head != "dex":
        raise ValueError("the P(under) head needs the dex head's shared features")
    if image_size < 32:
        raise ValueError("ResNet50 needs images of at least 32x32 pixels")
    mode = "caffe" if backbone_weights else "symmetric"
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = AgePreprocess(mode, name="preprocess")(inputs)
    features = build_backbone(image_size, backbone_weights)(x)
    if head == "regression":
        age = layers.Dense(1, activation="relu", dtype="float32", name="age")(features)
        return keras.Model(inputs, age), keras.Model(inputs, age, name="age_model")
    logits = layers.Dense(MAX_AGE + 1, dtype="float32", name="age_logits")(features)
    probs = layers.Softmax(dtype="float32", name="age_probs")(logits)
    age = ExpectedAge(dtype="float32", name="age")(probs)
    if under_age is None:
        return keras.Model(inputs, probs), keras.Model(inputs, age, name="age_model")
    under = layers.Dense(1, activation="sigmoid", dtype="float32", name=UNDER_HEAD)(features)
    return (keras.Model(inputs, {"age_probs": probs, UNDER_HEAD: under}),
            keras.Model(inputs, [age, under], name="age_model"))



def _target_and_weight(y_true) -> tuple:
    """(target (N,), weight (N,)) from targets of shape (N,), (N, 1) or (N, 2)."""
    y = ops.cast(y_true, "float32")
    y = ops.reshape(y, (ops.shape(y)[0], -1))
    if y.shape[-1] == 2:
        return y[:, 0], y[:, 1]
    return y[:, 0], ops.ones_like(y[:, 0])


def dex_loss(sigma: float = 2.5, l1_weight: float = 0.1):
    """Cross-entropy against a Gaussian around the true age, plus L1 on the expected age.

    The Gaussian spreads each noisy whole-year label over its neighbours; the L1 term ties
    the distribution's mean, which is what we report, to the label.
    """
    grid = ops.arange(MAX_AGE + 1, dtype="float32")

    def loss(y_true, probs):
        age, weight = _target_and_weight(y_true)
        y = ops.clip(ops.reshape(age, (-1, 1)), 0.0, float(MAX_AGE))
        target = ops.exp(-0.5 * ops.square((grid[None, :] - y) / sigma))
        target = target / ops.sum(target, axis=-1, keepdims=True)
        probs = ops.clip(ops.cast(probs, "float32"), 1e-7, 1.0)
        ce = -ops.sum(target * ops.log(probs), axis=-1)
        expected = ops.sum(probs * grid[None, :], axis=-1)
        return weight * (ce + l1_weight * ops.abs(expected - y[:, 0]))

    return loss


def under_loss(y_true, p):
    """Binary cross-entropy of P(under) against ``[is_under, weight]`` targets."""
    label, weight = _target_and_weight(y_true)
    p = ops.clip(ops.reshape(ops.cast(p, "float32"), (-1,)), 1e-7, 1.0 - 1e-7)
    return weight * -(label * ops.log(p) + (1.0 - label) * ops.log(1.0 - p))


def expected_age_mae(y_true, probs):
    """MAE in years of the distribution's mean (the dex head's estimate)."""
    grid = ops.arange(MAX_AGE + 1, dtype="float32")
    expected = ops.sum(ops.cast(probs, "float32") * grid[None, :], axis=-1)
    return ops.mean(ops.abs(expected - _target_and_weight(y_true)[0]))


def reestimate_batchnorm(model: keras.Model, batches) -> None:
    """Set every BatchNorm layer's moving statistics to their mean over training-mode
    passes of `batches` (images), with no gradient step.

    Statistics gathered at one input size are wrong at another (each feature map covers a
    different area), and an average of weights (EMA) no longer matches the statistics of
    the last raw weights; this measures them again for the weights as they are.
    """
    norms = [layer for layer in _layers(model) if isinstance(layer, layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # each pass replaces the statistics; we average the passes
    sums = [[0.0, 0.0] for _ in norms]
    passes = 0
    for images in batches:
        model(images, training=True)
        for acc, layer in zip(sums, norms):
            acc[0] = acc[0] + ops.convert_to_numpy(layer.moving_mean)
            acc[1] = acc[1] + ops.convert_to_numpy(layer.moving_variance)
        passes += 1
    for acc, layer, m in zip(sums, norms, momentum):
        layer.momentum = m
        if passes:
            layer.moving_mean.assign(acc[0] / passes)
            layer.moving_variance.assign(acc[1] / passes)


def _layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)
