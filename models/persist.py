"""Model files: one `.ageseg` file holding the architecture, the weights and the model card.

Why not a plain `.keras` file: ResNet50's 23.6 M float32 weights take 94 MB, over what a
repository should carry. Large kernels are stored as int8 per output channel with float32
scales (a quarter of the size; older files: float16), dequantized at load; small tensors
such as BatchNorm statistics stay float32. The file may also carry a LiteRT graph of the
same network (`litert.tflite`, models/litert.py) for scoring without TensorFlow. The card
travels inside the same zip so a model can never be separated from the description of how
it was trained.
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

from models.prediction import CardModel

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
class AgeModel(CardModel):
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
        return self._under_age_from_card()

    @property
    def image_size(self) -> int:
        return int(self.keras_model.input_shape[1])

    def predict_all(self, faces: np.ndarray, batch_size: int = 32
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(ages, calibrated distributions or None, calibrated P(under) head or None): the
        card's prediction (models/prediction.py) around the Keras network."""
        from models import prediction

        if self._predict_fn is None:
            self._predict_fn = prediction_graph(self.keras_model, self.has_distribution,
                                                self.under_head_age is not None)
        graph = self._predict_fn

        def raw(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return tuple(np.asarray(v) for v in graph.predict_on_batch(images))

        return prediction.predict_all(raw, prediction.PredictionSpec.of(self), faces,
                                      batch_size)


def prediction_graph(model: Any, distribution: bool, under: bool = False) -> Any:
    """A Keras model mapping a float batch (N, S, S, 3) to the network's raw (ages (N,),
    distributions (N, K), P(under) (N,)), float32 whatever the backbone computes in.

    The card's prediction around it (mirror average, calibration) is numpy, shared with the
    LiteRT runtime (models/prediction.py). Without a distribution (regression head) the
    second output is a (N, 0) placeholder; without the `p_under` head the third is zeros.
    Written in `keras.ops` so it runs on any Keras backend; `predict_on_batch` compiles it
    the backend's way (tf.function on TensorFlow, jax.jit on JAX). Other outputs, should a
    model have them, are left out.
    """
    import keras

    outputs = [_age_output(model)]
    if distribution:
        outputs.append(model.get_layer("age_probs").output)
    if under:
        outputs.append(model.get_layer("p_under").output)
    return _new_graph(keras.Model(model.inputs, outputs), distribution, under)


def _age_output(model: Any) -> Any:
    """The model's age output: the layer named "age" when there is one, else its first."""
    names = {layer.name for layer in model.layers}
    return model.get_layer("age").output if "age" in names else model.outputs[0]


def _graph_class() -> type:
    import keras
    from keras import ops

    class PredictionGraph(keras.Model):
        """The network's three raw outputs, float32 (see `prediction_graph`)."""

        def __init__(self, inner: Any, distribution: bool, under: bool):
            super().__init__()
            self.inner, self.distribution, self.under = inner, distribution, under

        def call(self, x: Any) -> tuple[Any, Any, Any]:
            out = self.inner(x, training=False)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            age = ops.cast(out.pop(0)[:, 0], "float32")
            probs = (ops.cast(out.pop(0), "float32") if self.distribution
                     else ops.zeros((ops.shape(x)[0], 0), "float32"))
            under = (ops.cast(out.pop(0)[:, 0], "float32") if self.under
                     else ops.zeros_like(age))
            return age, probs, under

    return PredictionGraph


def _new_graph(inner: Any, distribution: bool, under: bool) -> Any:
    """An instance of the graph class, defined on first use so that importing this module
    does not import Keras."""
    global _GRAPH_CLASS
    if _GRAPH_CLASS is None:
        _GRAPH_CLASS = _graph_class()
    return _GRAPH_CLASS(inner, distribution, under)


_GRAPH_CLASS: type | None = None


def save_model(age_model: Any, path: Path, card: dict[str, Any],
               weights: str = "int8") -> Path:
    """Write model + card atomically; a crash leaves any previous file at `path` intact.

    `weights` is how the large kernels are stored: "int8" (per output channel, see
    `encode_weights`) or "float16" (the older files' way, for a training checkpoint).
    """
    path = Path(path)
    arrays = encode_weights(age_model.get_weights(), weights)
    card = {**card, "format": FORMAT, "image_size": int(age_model.input_shape[1]),
            "weights": {"storage": _STORAGE[weights],
                        "min_size": HALF_PRECISION_MIN_SIZE}}
    _write_zip(path, {"card.json": json.dumps(card, indent=2, sort_keys=True),
                      "architecture.json": age_model.to_json(),
                      "weights.npz": _npz_bytes(arrays)})
    return path


_STORAGE = {
    "int8": "kernels int8, symmetric per output channel with float32 scales; rest float32",
    "float16": "kernels float16; rest float32",
}


def encode_weights(weights: list[np.ndarray], storage: str = "int8") -> dict[str, np.ndarray]:
    """The arrays of weights.npz: `w0000` as stored, or for an int8 kernel `q0000` (int8)
    and `s0000` (float32 scale per output channel, the last axis).

    Why int8: the file carries a LiteRT graph beside the Keras weights and must stay small
    enough to travel (the repository's tree goes to a GPU machine within 64 MiB). Symmetric
    per-channel int8 is what LiteRT's dynamic-range quantization does to the same kernels;
    dequantized at load, the Keras runtime's ages move by hundredths of a year (the card's
    `weights.parity`, bench/litert_parity.py). Tensors under HALF_PRECISION_MIN_SIZE
    (BatchNorm statistics, biases) stay float32.
    """
    if storage not in _STORAGE:
        raise ValueError(f"weights storage must be one of {tuple(_STORAGE)}, not {storage!r}")
    arrays: dict[str, np.ndarray] = {}
    for i, w in enumerate(weights):
        w = np.asarray(w)
        if w.size < HALF_PRECISION_MIN_SIZE or not np.issubdtype(w.dtype, np.floating):
            arrays[f"w{i:04d}"] = w
        elif storage == "float16" or w.ndim < 2:
            arrays[f"w{i:04d}"] = w.astype(np.float16)
        else:
            q, scale = quantize_int8(w)
            arrays[f"q{i:04d}"], arrays[f"s{i:04d}"] = q, scale
    return arrays


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per last-axis channel): w ~ q * scale, |q| <= 127."""
    w = np.asarray(w, np.float32)
    peak = np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    return q, scale


def decode_weights(npz: Any) -> list[np.ndarray]:
    """weights.npz's arrays back to float weights, in order (int8, float16 or plain)."""
    names = {name[1:]: name[0] for name in npz.files if name[0] in "wq"}
    out = []
    for index in sorted(names):
        if names[index] == "q":
            out.append(npz[f"q{index}"].astype(np.float32) * npz[f"s{index}"])
        else:
            out.append(npz[f"w{index}"])
    return out


def read_member(path: Path, name: str) -> bytes | None:
    """One member of a model file (e.g. the LiteRT graph), or None when it has none;
    without TensorFlow."""
    with _open_zip(path) as zf:
        return zf.read(name) if name in zf.namelist() else None


def add_members(path: Path, members: dict[str, bytes], card_update: dict[str, Any]
                ) -> Path:
    """Add (or replace) members of a model file and merge `card_update` into its card's top
    level, atomically: the weights and architecture are copied as they are."""
    path = Path(path)
    with _open_zip(path) as zf:
        kept = {info.filename: zf.read(info) for info in zf.infolist()
                if info.filename not in members}
    card = json.loads(kept["card.json"])
    card.update(card_update)
    kept["card.json"] = json.dumps(card, indent=2, sort_keys=True).encode()
    _write_zip(path, {**kept, **members})
    return path


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _write_zip(path: Path, members: dict[str, str | bytes]) -> None:
    """Write a zip of `members` at `path` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                for name, data in members.items():
                    zf.writestr(name, data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a model file is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
            weights = decode_weights(npz)
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
