"""The age model on LiteRT: export into the model file, and a scoring runtime without
TensorFlow.

Why: on a CPU node TensorFlow is most of the install (2.3 GB) and of a night's start-up, and
its float32 ResNet50 costs ~7.4 ms a face pass on one core; the same network converted with
`tf.lite.TFLiteConverter` and dynamic-range int8 weights runs in ~3.4 ms with ages within
about a tenth of a year (issue 32). LiteRT is already a dependency (BlazeFace runs on it).

`export_model_file` (needs TensorFlow: `ageseg export`, `ageseg train`) stores the graph as
the member `litert.tflite` of the .ageseg file and records on the card how it was made and
how closely it matches Keras. `LiteRTModel` (needs only `ai_edge_litert` and numpy) runs it
behind the same `predict_all` as the Keras `AgeModel`; the card's prediction around the
network (mirror average, calibration) is models/prediction.py for both.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from models.prediction import CardModel, PredictionSpec, predict_all

MEMBER = "litert.tflite"
HOW = ("tf.lite.TFLiteConverter.from_concrete_functions on the Keras network (one pass, "
       "one output: age, P(under), age distribution), optimizations=[Optimize.DEFAULT]: "
       "dynamic-range int8 weights, float32 activations")
# What "matches Keras" means for the export's own check (bench/litert_parity.py holds the
# test split to the bars: MAE 0.02 y, 0.3 y a face, P(under) 0.01, flags 0.5 pt).
EXPORT_MAX_MEAN_AGE_DIFF = 0.5


class NoLiteRTGraph(LookupError):
    """The model file carries no LiteRT graph (export it: `ageseg export MODEL`)."""


class LiteRTModel(CardModel):
    """A model file's LiteRT graph with its card: the Keras `AgeModel`'s `predict_all`
    contract, same batches, one interpreter per thread that calls it (a model worker), each
    with `threads` threads."""

    runtime = "litert"
    device = "CPU"

    def __init__(self, graph: bytes, card: dict[str, Any], threads: int = 1):
        self.graph, self.card, self.threads = graph, card, max(1, int(threads))
        info = card.get("litert") or {}
        self.mirror = bool(card.get("prediction", {}).get("mirror_average", False))
        self._distribution = bool(info.get("distribution", True))
        self._under = bool(info.get("under_head", False))
        self.precision = "int8 weights"
        self._local = threading.local()

    @property
    def image_size(self) -> int:
        return int(self.card["image_size"])

    @property
    def has_distribution(self) -> bool:
        return self._distribution

    @property
    def under_head_age(self) -> float | None:
        return self._under_age_from_card() if self._under else None

    def predict_all(self, faces: np.ndarray, batch_size: int = 32
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(ages, calibrated distributions or None, calibrated P(under) or None), as
        `AgeModel.predict_all`."""
        return predict_all(self._raw, PredictionSpec.of(self), faces, batch_size)

    def _raw(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        local = self._local
        if getattr(local, "interpreter", None) is None:  # this thread's own: not shareable
            local.interpreter = new_interpreter(self.graph, self.threads)
            local.shape = None
        interpreter = local.interpreter
        inp = interpreter.get_input_details()[0]["index"]
        if local.shape != images.shape:  # once per batch shape: the job always uses one
            interpreter.resize_tensor_input(inp, list(images.shape))
            interpreter.allocate_tensors()
            local.shape = images.shape
            local.output = interpreter.get_output_details()[0]["index"]
        interpreter.set_tensor(inp, np.ascontiguousarray(images, np.float32))
        interpreter.invoke()
        out = interpreter.get_tensor(local.output)  # (B, 2 + K): age, P(under), distribution
        return out[:, 0].copy(), out[:, 2:].copy(), out[:, 1].copy()


def new_interpreter(graph: bytes, threads: int) -> Any:
    """A LiteRT interpreter on a graph held in memory, quiet, tensors allocated."""
    from models.blazeface import _quiet_stderr

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = Interpreter(model_content=graph, num_threads=max(1, threads))
        interpreter.allocate_tensors()
    return interpreter


def load_litert(path: Path | None = None, threads: int = 1) -> LiteRTModel:
    """The LiteRT runtime of a model file; `NoLiteRTGraph` when it carries none. Never
    imports TensorFlow or Keras."""
    from models.persist import DEFAULT_MODEL_PATH, FORMAT, ModelFileError, read_card, read_member

    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    card = read_card(path)
    if card.get("format") != FORMAT:
        raise ModelFileError(f"{path}: unknown model format {card.get('format')!r}")
    graph = read_member(path, MEMBER)
    if graph is None or not card.get("litert"):
        raise NoLiteRTGraph(f"{path} carries no LiteRT graph: run `ageseg export {path}` "
                            f"(needs the train extra) or use --runtime keras")
    return LiteRTModel(graph, card, threads)


def has_graph(path: Path | None = None) -> bool:
    """Whether a model file carries a LiteRT graph (without TensorFlow)."""
    from models.persist import DEFAULT_MODEL_PATH, read_member

    return read_member(Path(path) if path is not None else DEFAULT_MODEL_PATH,
                       MEMBER) is not None


# -- export (TensorFlow) -------------------------------------------------------------------

def convert(age_model: Any) -> bytes:
    """The Keras AgeModel's network as a LiteRT graph with dynamic-range int8 weights: one
    pass, any batch size, one output (B, 2 + K): age, raw P(under) (0 without the head),
    then the raw age distribution (K = 0 for a regression head).

    One output because the converter neither keeps the order nor the names of several.
    The concrete function goes in without its Keras object, so the converter freezes the
    variables into constants; given the object (its newer path) it keeps them as resource
    variables that LiteRT reads uninitialised (NaN ages, TF 2.21 / LiteRT 2.3).
    """
    import tensorflow as tf

    from models.persist import prediction_graph

    graph = prediction_graph(age_model.keras_model, age_model.has_distribution,
                             age_model.under_head_age is not None)
    size = age_model.image_size

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                                name="image")])
    def network(image: Any) -> Any:
        age, probs, under = graph(image)
        return tf.concat([age[:, None], under[:, None], probs], axis=1)

    import logging

    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)  # "consider providing the trackable_obj": see above
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [network.get_concrete_function()])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return bytes(converter.convert())
    finally:
        absl.setLevel(level)


def generated_faces(size: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """`n` face-like crops for a parity check without real faces: the demo's public-domain
    faces shifted, mirrored, dimmed and brightened, and smooth random images."""
    from PIL import Image

    from demo.scenes import available_demo_faces

    rng = np.random.default_rng(seed)
    bases = [np.asarray(Image.fromarray(face[0]).resize((size, size)), np.float32)
             for face in available_demo_faces()]
    out = []
    for i in range(n):
        if bases and i % 3:
            face = bases[i % len(bases)]
            face = np.roll(face, tuple(rng.integers(-size // 8, size // 8, 2)), (0, 1))
            face = face[:, ::-1] if rng.random() < 0.5 else face
            face = face * rng.uniform(0.5, 1.3) + rng.uniform(-30, 30)
        else:  # smooth noise: a coarse grid blown up to the crop's size
            grid = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
            face = np.asarray(Image.fromarray(grid).resize((size, size), Image.BILINEAR),
                              np.float32)
        out.append(np.clip(face, 0, 255).astype(np.uint8))
    return np.stack(out)


def faces_from_folder(folder: Path, size: int, n: int = 256) -> np.ndarray:
    """Up to `n` face files of a folder (evenly spread over its sorted names), resized."""
    from PIL import Image

    names = sorted(p for p in Path(folder).iterdir()
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not names:
        raise FileNotFoundError(f"no face images (.jpg, .png) in {folder}")
    pick = [names[i] for i in np.linspace(0, len(names) - 1, min(n, len(names))).astype(int)]
    faces = []
    for p in pick:
        with Image.open(p) as img:
            faces.append(np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR)))
    return np.stack(faces)


def parity(reference: CardModel, other: CardModel, faces: np.ndarray, batch_size: int = 32
           ) -> dict[str, float]:
    """How far `other`'s predictions are from `reference`'s on `faces`: mean and largest
    age difference (years), mean P(under) difference at the card's challenge age."""
    a_ages, a_probs, a_head = reference.predict_all(faces, batch_size)
    b_ages, b_probs, b_head = other.predict_all(faces, batch_size)
    diff = np.abs(a_ages.astype(np.float64) - b_ages)
    out = {"faces": len(faces), "mean_abs_age_diff": round(float(diff.mean()), 4),
           "max_abs_age_diff": round(float(diff.max()), 4)}
    age = float((reference.card.get("calibration") or {}).get("challenge_age", 25.0))
    pa, pb = reference.p_under(a_probs, a_head, age), other.p_under(b_probs, b_head, age)
    if pa is not None and pb is not None:
        out["mean_abs_p_under_diff"] = round(float(np.abs(pa - pb).mean()), 5)
    return out


def export_model_file(path: Path, faces: Path | None = None, out: Path | None = None,
                      echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Write the model at `path` (or to `out`) with int8 Keras weights and a LiteRT graph,
    each checked against the model as it was on `faces` (a folder of face files; without
    it, generated crops). Returns the card's `litert` entry. Needs TensorFlow.

    Raises ValueError when the graph's ages are off by more than EXPORT_MAX_MEAN_AGE_DIFF
    on average: a broken conversion must not reach the model file.
    """
    import tensorflow as tf

    from models.persist import add_members, load_model, read_card, save_model

    path, out = Path(path), Path(out) if out is not None else Path(path)
    card = read_card(path)
    before = load_model(path, precision="float32")
    crops = (faces_from_folder(faces, before.image_size) if faces is not None
             else generated_faces(before.image_size))
    source = str(faces) if faces is not None else "generated crops (demo faces, noise)"
    storage = (card.get("weights") or {}).get("storage", "kernels float16; rest float32")
    weights_entry = dict(card.get("weights") or {})
    if not storage.startswith("kernels int8"):
        kept = {k: v for k, v in card.items() if k not in ("format", "image_size", "weights")}
        save_model(before.keras_model, out, kept, weights="int8")
        keras_model = load_model(out, precision="float32")
        weights_entry = dict(read_card(out)["weights"])
        weights_entry["parity"] = {"against": storage, "source": source,
                                   **parity(before, keras_model, crops)}
        echo(f"Keras weights: int8 per channel, ages vs {storage.split(';')[0]}: "
             f"{_describe(weights_entry['parity'])}")
    else:
        keras_model = before
        if out != path:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(path.read_bytes())
    graph = convert(keras_model)
    lite = LiteRTModel(graph, {**card, "litert": {
        "distribution": keras_model.has_distribution,
        "under_head": keras_model.under_head_age is not None}})
    check = parity(keras_model, lite, crops)
    echo(f"LiteRT graph ({len(graph) / 1e6:.1f} MB), ages vs Keras: {_describe(check)}")
    if not check["mean_abs_age_diff"] <= EXPORT_MAX_MEAN_AGE_DIFF:  # NaN fails too
        raise ValueError(f"the LiteRT graph's ages are {check['mean_abs_age_diff']} y from "
                         f"Keras on average (at most {EXPORT_MAX_MEAN_AGE_DIFF}): not exported")
    entry = {"member": MEMBER, "how": HOW, "bytes": len(graph),
             "tensorflow": tf.__version__, "ai_edge_litert": _version("ai-edge-litert"),
             "made": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "distribution": keras_model.has_distribution,
             "under_head": keras_model.under_head_age is not None,
             "parity": {"against": "Keras, float32, same weights", "source": source, **check}}
    add_members(out, {MEMBER: graph}, {"litert": entry, "weights": weights_entry})
    return json.loads(json.dumps(entry))


def _describe(figures: dict[str, float]) -> str:
    text = (f"mean |diff| {figures['mean_abs_age_diff']:.3f} y, largest "
            f"{figures['max_abs_age_diff']:.3f} y")
    if "mean_abs_p_under_diff" in figures:
        text += f", P(under) mean |diff| {figures['mean_abs_p_under_diff']:.4f}"
    return f"{text} ({figures['faces']} faces)"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
