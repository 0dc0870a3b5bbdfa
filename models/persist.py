"""Model files: one `.ageseg` file holding the architecture, the weights and the model card.

Why not a plain `.keras` file: ResNet50's 23.6 M float32 weights take 94 MB, over what a
repository should carry. Large kernels are stored as float16 (half the size; the age
estimates move by hundredths of a year, see tests) while small tensors such as BatchNorm
statistics stay float32. The card travels inside the same zip so a model can never be
separated from the description of how it was trained.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "ageseg-model/1"
PRECISIONS = ("auto", "float32", "bf16", "float16")
# The Keras dtype policy each precision runs the backbone in; the head stays float32.
_POLICIES = {"bf16": "mixed_bfloat16", "float16": "mixed_float16"}
# Whether "auto" picks bf16 on a CPU with bfloat16 matrix units (AMX, AVX512-BF16). Decided
# by bench/precision.py on the test split of the labelled faces: on only if the shipped
# model's MAE moves <= 0.02 y and the 13-17 and 30+ flag rates each <= 0.5 point. Model
# 20261130-110140 passed (MAE 5.4455 -> 5.4454 y, 13-17 flagged 91.11 % both, 30+ flagged
# 5.75 -> 5.59 %). The shipped model 20261204-214852, 2,556 test faces: MAE 5.4555 ->
# 5.4581 y and 30+ flagged 9.37 -> 9.29 % pass, but 13-17 flagged 92.22 -> 93.33 % moves
# 1.11 points (one teenager of 90 crosses the cut): bf16 stays opt-in (--precision bf16),
# 1.65x faster. Re-run the bench on a new model.
CPU_BF16_BY_DEFAULT = False
_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
DEFAULT_MODEL_PATH = Path(__file__).with_name("default.ageseg")
HALF_PRECISION_MIN_SIZE = 4096  # tensors smaller than this stay float32


class ModelNotFound(FileNotFoundError):
    """No model file where one was expected."""


class ModelFileError(ValueError):
    """A file that is not a usable `.ageseg` model."""


@dataclass
class AgeModel:
    """A loaded age model: Keras model plus its card, with batched prediction.

    With `mirror`, each estimate is the mean of the model's estimates for the face and its
    mirror image. Faces are left-right symmetric and the models learn with flipped faces, so
    the two estimates err partly independently: their mean is about 0.15 years more accurate
    (test MAE 5.79 -> 5.64 for the 20261129-191434 model) for twice the arithmetic. A model's
    card says whether its figures were measured that way (`prediction.mirror_average`), and
    `load_model` follows it, so the card's error figures hold for the ages it produces.
    """

    keras_model: Any
    card: dict[str, Any] = field(default_factory=dict)
    mirror: bool = False
    device: str = "CPU"  # where the model runs: "CPU" or "GPU"
    precision: str = "float32"  # the backbone's: "float32", "bf16" or "float16"
    _predict_fn: Any = None

    @property
    def has_distribution(self) -> bool:
        """Whether the model outputs a distribution over ages (the dex head) that
        `predict_distribution` can return; the study's regression head does not."""
        return any(layer.name == "age_probs" for layer in self.keras_model.layers)

    @property
    def under_head_age(self) -> float | None:
        """The age of the model's own P(age < X) output (models/build.py), or None."""
        if not any(layer.name == "p_under" for layer in self.keras_model.layers):
            return None
        head = (self.card.get("calibration") or {}).get("under_head") or {}
        return float(head.get("age", self.card.get("recipe", {}).get("under_age") or 25.0))

    @property
    def under_temperature(self) -> float:
        head = (self.card.get("calibration") or {}).get("under_head") or {}
        return float(head.get("temperature", 1.0))

    @property
    def under_source(self) -> str:
        """Where the card's Challenge 25 operating point reads P(under) from: the model's
        own P(under) head, or its age distribution (the default, and for older models)."""
        return str((self.card.get("calibration") or {}).get("source", "distribution"))

    @property
    def temperature(self) -> float:
        """The calibration the card names (models/calibrate.py); 1.0: none."""
        return float((self.card.get("calibration") or {}).get("temperature", 1.0))

    @property
    def version(self) -> str:
        return str(self.card.get("version", "unversioned"))

    @property
    def image_size(self) -> int:
        return int(self.keras_model.input_shape[1])

    def warm_up(self, batch_size: int = 32) -> None:
        """Trace the prediction graph for ``batch_size`` now (1-3 s on a CPU), at load time,
        as a server would, instead of inside the first batch of photos."""
        size = self.image_size
        self.predict_faces(np.zeros((1, size, size, 3), np.uint8), batch_size=batch_size)

    def predict_faces(self, faces: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Ages in years for face crops (N, S, S, 3) with values 0-255.

        Every call runs at one fixed batch shape (the last batch is padded), so the graph is
        traced once per process instead of once per distinct batch length.
        """
        return self.predict_distribution(faces, batch_size)[0]

    def predict_distribution(self, faces: np.ndarray, batch_size: int = 32
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        """(ages (N,), calibrated age distributions (N, 101) or None without one).

        The ages are the distribution's mean as trained (what the card's error figures
        measure); the distribution has the card's temperature applied, so the probabilities
        read from it (e.g. P(age < 25)) mean what they say (models/calibrate.py).
        """
        return self.predict_all(faces, batch_size)[:2]

    def p_under(self, probs: np.ndarray | None, head: np.ndarray | None, age: float
                ) -> np.ndarray | None:
        """P(age < `age`) per face from `predict_all`'s outputs: the P(under) head where the
        card chose it, for this age, else the calibrated distribution; None without either."""
        from models.calibrate import p_under

        if head is not None and self.reads_head(age):
            return head.astype(np.float64)
        return None if probs is None else p_under(probs, age)

    def reads_head(self, age: float) -> bool:
        """Whether P(age < `age`) comes from the P(under) head (the card chose it, for
        this age) rather than from the age distribution."""
        return self.under_source == "under_head" and self.under_head_age == age

    def predict_all(self, faces: np.ndarray, batch_size: int = 32
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(ages, calibrated distributions or None, calibrated P(under) head or None)."""
        if faces.ndim != 4 or faces.shape[1:] != (self.image_size, self.image_size, 3):
            raise ValueError(
                f"expected faces of shape (N, {self.image_size}, {self.image_size}, 3), "
                f"got {faces.shape}"
            )
        if self._predict_fn is None:
            self._predict_fn = prediction_graph(
                self.keras_model, self.mirror, self.has_distribution, self.temperature,
                self.under_temperature if self.under_head_age is not None else None)
        ages = np.empty(len(faces), dtype=np.float32)
        probs = np.empty((len(faces), 0), np.float32)
        under = np.empty(len(faces), np.float32)
        for start in range(0, len(faces), batch_size):
            chunk = faces[start : start + batch_size].astype(np.float32)
            n = len(chunk)
            if n < batch_size:
                pad = np.zeros((batch_size - n, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            age, dist, head = self._predict_fn.predict_on_batch(chunk)
            ages[start : start + n] = np.asarray(age)[:n]
            under[start : start + n] = np.asarray(head)[:n]
            if start == 0:
                probs = np.empty((len(faces), dist.shape[-1]), np.float32)
            probs[start : start + n] = np.asarray(dist)[:n]
        return (ages, probs if self.has_distribution else None,
                under if self.under_head_age is not None else None)


def prediction_graph(model: Any, mirror: bool, distribution: bool, temperature: float,
                     under_temperature: float | None = None) -> Any:
    """A Keras model mapping a float batch (N, S, S, 3) to (ages (N,), distributions (N, K),
    P(under) (N,)).

    With `mirror`, the batch and its mirror images go through the model together and their
    estimates (distributions, P(under)) are averaged. The distribution is then sharpened or
    widened by the calibration temperature: p ** (1 / T), renormalised. Without a
    distribution (regression head) the second output is a (N, 0) placeholder. With
    `under_temperature` the model's `p_under` head is the third output, calibrated after
    the average (its logit divided by the temperature); without it, zeros.

    Written in `keras.ops` so it runs on any Keras backend; `predict_on_batch` compiles it
    the backend's way (tf.function on TensorFlow, jax.jit on JAX). Other outputs, should a
    model have them, are left out.
    """
    import keras

    outputs = [_age_output(model)]
    if distribution:
        outputs.append(model.get_layer("age_probs").output)
    if under_temperature is not None:
        outputs.append(model.get_layer("p_under").output)
    return _new_graph(keras.Model(model.inputs, outputs), mirror, distribution,
                      temperature, under_temperature)


def _age_output(model: Any) -> Any:
    """The model's age output: the layer named "age" when there is one, else its first."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("age").output if "age" in names else model.outputs[0]


def _graph_class() -> type:
    import keras
    from keras import ops

    class PredictionGraph(keras.Model):
        """Mirror average and calibrated distribution around the age model (see
        `prediction_graph`)."""

        def __init__(self, inner: Any, mirror: bool, distribution: bool, temperature: float,
                     under_temperature: float | None):
            super().__init__()
            self.inner, self.mirror = inner, mirror
            self.distribution, self.temperature = distribution, float(temperature)
            self.under_temperature = under_temperature

        def forward(self, x: Any) -> tuple[Any, Any, Any]:
            out = self.inner(x, training=False)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            age = ops.cast(out.pop(0)[:, 0], "float32")
            probs = (ops.cast(out.pop(0), "float32") if self.distribution
                     else ops.zeros((ops.shape(x)[0], 0), "float32"))
            under = (ops.cast(out.pop(0)[:, 0], "float32")
                     if self.under_temperature is not None else ops.zeros_like(age))
            return age, probs, under

        def call(self, x: Any) -> tuple[Any, Any, Any]:
            if self.mirror:
                n = ops.shape(x)[0]
                views = self.forward(ops.concatenate([x, ops.flip(x, axis=2)], axis=0))
                age, probs, under = ((v[:n] + v[n:]) / 2 for v in views)
            else:
                age, probs, under = self.forward(x)
            if self.distribution and self.temperature != 1.0:
                logp = ops.log(ops.maximum(probs, 1e-12)) / self.temperature
                probs = ops.softmax(logp, axis=-1)
            if self.under_temperature not in (None, 1.0):
                p = ops.clip(under, 1e-7, 1.0 - 1e-7)
                under = ops.sigmoid((ops.log(p) - ops.log(1.0 - p)) / self.under_temperature)
            return age, probs, under

    return PredictionGraph


def _new_graph(inner: Any, mirror: bool, distribution: bool, temperature: float,
               under_temperature: float | None) -> Any:
    """An instance of the graph class, defined on first use so that importing this module
    does not import Keras."""
    global _GRAPH_CLASS
    if _GRAPH_CLASS is None:
        _GRAPH_CLASS = _graph_class()
    return _GRAPH_CLASS(inner, mirror, distribution, temperature, under_temperature)


_GRAPH_CLASS: type | None = None


def save_model(age_model: Any, path: Path, card: dict[str, Any]) -> Path:
    """Write model + card atomically; a crash leaves any previous file at `path` intact."""
    path = Path(path)
    arrays = {}
    for i, w in enumerate(age_model.get_weights()):
        dtype = np.float16 if w.size >= HALF_PRECISION_MIN_SIZE else w.dtype
        arrays[f"w{i:04d}"] = w.astype(dtype)
    weights = io.BytesIO()
    np.savez(weights, **arrays)
    card = {**card, "format": FORMAT, "image_size": int(age_model.input_shape[1])}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("card.json", json.dumps(card, indent=2, sort_keys=True))
                zf.writestr("architecture.json", age_model.to_json())
                zf.writestr("weights.npz", weights.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_card(path: Path) -> dict[str, Any]:
    """The model card alone, without loading TensorFlow (fast, for reports and --dry-run)."""
    with _open_zip(path) as zf:
        return json.loads(zf.read("card.json"))


def load_model(path: Path | None = None, *, precision: str = "auto",
               mixed_precision: bool | None = None) -> AgeModel:
    """Load a `.ageseg` file (default: the model shipped with the package).

    ``precision`` is what the backbone computes in (the weights stay float32, the age head
    float32 for a stable softmax): "float32"; "bf16" (Keras' mixed_bfloat16, for CPUs with
    bfloat16 matrix units and GPUs); "float16" (mixed_float16, for GPUs); "auto": float16
    on a GPU, bf16 on a CPU with AMX or AVX512-BF16 when `CPU_BF16_BY_DEFAULT`, otherwise
    float32. ``mixed_precision`` is the older switch: True is "float16", False "float32".
    """
    import keras

    from models import build  # noqa: F401  (registers the custom layers)

    if mixed_precision is not None:
        precision = "float16" if mixed_precision else "float32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    device = "GPU" if gpu_present() else "CPU"
    if precision == "auto":
        precision = auto_precision(device == "GPU", cpu_has_bf16())
    with _open_zip(path) as zf:
        card = json.loads(zf.read("card.json"))
        if card.get("format") != FORMAT:
            raise ModelFileError(f"{path}: unknown model format {card.get('format')!r}")
        architecture = json.loads(zf.read("architecture.json"))
        if precision in _POLICIES:
            _mixed_backbone(architecture, _POLICIES[precision])
        model = keras.models.model_from_json(json.dumps(architecture))
        with np.load(io.BytesIO(zf.read("weights.npz"))) as npz:
            weights = [npz[k] for k in sorted(npz.files)]
    expected = model.get_weights()
    if len(weights) != len(expected):
        raise ModelFileError(f"{path}: weights do not match the architecture")
    model.set_weights([w.astype(e.dtype) for w, e in zip(weights, expected)])
    mirror = bool(card.get("prediction", {}).get("mirror_average", False))
    return AgeModel(model, card, mirror=mirror, device=device, precision=precision)


def auto_precision(gpu: bool, bf16_cpu: bool, cpu_bf16_by_default: bool | None = None
                   ) -> str:
    """What "auto" means here: float16 on a GPU; on a CPU, bf16 where it has bfloat16 units
    and the measured quality allows it (`CPU_BF16_BY_DEFAULT`), else float32."""
    if gpu:
        return "float16"
    allowed = CPU_BF16_BY_DEFAULT if cpu_bf16_by_default is None else cpu_bf16_by_default
    return "bf16" if bf16_cpu and allowed else "float32"


def gpu_present() -> bool:
    """Whether the Keras backend in use sees a GPU (TensorFlow, JAX or PyTorch)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return bool(torch.cuda.is_available())
    return False


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU has bfloat16 matrix units (AMX or AVX512-BF16 in its flags)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


def _mixed_backbone(architecture: dict[str, Any], policy: str = "mixed_float16") -> None:
    """Switch the preprocessing layer and every backbone layer to `policy`, in place.

    The policy is part of each saved layer's config, so setting the global policy before
    loading would change nothing; the head keeps its explicit float32 for a stable softmax.
    """

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            dtype = node.get("dtype")
            if isinstance(dtype, dict) and dtype.get("class_name") == "DTypePolicy":
                dtype["config"]["name"] = policy
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for layer in architecture["config"]["layers"]:
        if layer["class_name"] == "Functional" or layer["config"].get("name") == "preprocess":
            walk(layer)


def _open_zip(path: Path) -> zipfile.ZipFile:
    if not Path(path).is_file():
        raise ModelNotFound(f"model file not found: {path}")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path} is not an ageseg model file") from exc
