"""MTCNN, the previous default face detector, beside models/blazeface.py.

TensorFlow and mtcnn are imported only when an `MtcnnDetector` first detects, so commands
that never look for faces start fast.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from models.faces import FaceBox, check_detector_options, check_image
from models.photos import MAX_SIDE

# mtcnn 1.0 sizes its image pyramid as if min_face_size were 20: with larger values the
# last levels fall under PNet's 12 px window and Keras 3 raises. So mtcnn always gets 20
# and we shrink the image instead, which is the same pyramid and less work.
_MTCNN_FACE_PX = 20
_PNET_WINDOW = 12


class MtcnnDetector:
    """MTCNN (weights ship inside the mtcnn wheel; nothing is downloaded).

    Runs on a copy shrunk so that the longest side is at most `max_side` and a face of
    `min_face_size` pixels (in the original photo) becomes the 20 px MTCNN looks for;
    boxes are mapped back to the original photo. Boxes under `min_confidence` are dropped.
    The square cut around a box is the model's crop contract for "mtcnn" (models/crop.py).
    """

    name = "mtcnn"
    confident = 0.95

    def decode_side(self, image_size: int) -> int:
        return MAX_SIDE

    def __init__(
        self, max_side: int = 640, min_face_size: int = 40, min_confidence: float = 0.8
    ) -> None:
        if max_side < _PNET_WINDOW:
            raise ValueError(f"max_side must be at least {_PNET_WINDOW}, got {max_side}")
        check_detector_options(min_face_size, min_confidence)
        self.max_side = max_side
        self.min_face_size = min_face_size
        self.min_confidence = min_confidence
        self._mtcnn: Any = None

    def clone(self) -> MtcnnDetector:
        """The same options and networks of its own, for another prep thread."""
        return MtcnnDetector(self.max_side, self.min_face_size, self.min_confidence)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        small, scale = self._shrink(image)
        if small is None:
            return []
        found = self._model().detect_faces(small, min_face_size=_MTCNN_FACE_PX)
        return self._boxes(found, scale, image.shape)

    def warm_up(self) -> None:
        """Load MTCNN and trace its networks now (~3 s), so the first batch of photos is not
        charged for it and a broken install fails before any photo is read."""
        rng = np.random.default_rng(0)
        noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        self.detect_many([noise])

    def detect_many(
        self, images: Sequence[np.ndarray], batch_size: int = 16
    ) -> list[list[FaceBox]]:
        """Like `detect` for each image, batching images that shrink to the same shape
        (mtcnn pads a batch to its largest image, so mixed shapes would waste work)."""
        results: list[list[FaceBox]] = [[] for _ in images]
        groups: dict[tuple[int, ...], list[tuple[int, np.ndarray, float]]] = {}
        for i, image in enumerate(images):
            small, scale = self._shrink(image)
            if small is not None:
                groups.setdefault(small.shape, []).append((i, small, scale))
        for members in groups.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                found = self._model().detect_faces(
                    [small for _, small, _ in chunk], min_face_size=_MTCNN_FACE_PX
                )
                for (i, _, scale), faces in zip(chunk, found, strict=True):
                    results[i] = self._boxes(faces, scale, images[i].shape)
        return results

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray | None, float]:
        height, width = check_image(image)
        scale = min(self.max_side / max(height, width), _MTCNN_FACE_PX / self.min_face_size)
        new_w, new_h = round(width * scale), round(height * scale)
        if min(new_w, new_h) < _PNET_WINDOW:
            return None, scale  # too small to hold a face of min_face_size
        if (new_w, new_h) == (width, height):
            return np.ascontiguousarray(image), 1.0
        resized = Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR)
        return np.asarray(resized), new_w / width

    def _boxes(self, found: list[dict], scale: float, shape: tuple[int, ...]) -> list[FaceBox]:
        height, width = shape[:2]
        boxes = []
        for face in found:
            confidence = float(face["confidence"])
            if confidence < self.min_confidence:
                continue
            x, y, w, h = (float(v) / scale for v in face["box"])
            x0, y0 = max(0, round(x)), max(0, round(y))
            x1, y1 = min(width, round(x + w)), min(height, round(y + h))
            if x1 > x0 and y1 > y0:
                boxes.append(FaceBox(x0, y0, x1 - x0, y1 - y0, confidence,
                                     eyes=_eyes(face, scale)))
        return boxes

    def _model(self) -> Any:
        if self._mtcnn is None:
            self._mtcnn = build_mtcnn()
        return self._mtcnn


def _eyes(face: dict, scale: float) -> tuple[float, float, float, float] | None:
    """MTCNN's two eye keypoints in photo pixels, the eye on the image's left first."""
    points = face.get("keypoints") or {}
    if "left_eye" not in points or "right_eye" not in points:
        return None
    (ax, ay), (bx, by) = (tuple(float(v) / scale for v in points[k])
                          for k in ("left_eye", "right_eye"))
    return (ax, ay, bx, by) if ax <= bx else (bx, by, ax, ay)


def build_mtcnn(traced: bool = True) -> Any:
    """mtcnn's MTCNN with the weights inside its wheel; `traced` runs its networks as graphs
    (see `_compiled`), False as mtcnn ships them (for comparisons)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from mtcnn import MTCNN
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    # Absolute paths: given a bare name, mtcnn first tries ./pnet.lz4 in the current
    # directory, and those files are unpickled (joblib), i.e. can run code.
    weights = importlib.resources.files("mtcnn.assets.weights")
    stages = [
        StagePNet(weights=str(weights / "pnet.lz4")),
        StageRNet(weights=str(weights / "rnet.lz4")),
        StageONet(weights=str(weights / "onet.lz4")),
    ]
    # Input sides: PNet takes every pyramid level, RNet 24 px and ONet 48 px candidates.
    for stage, side in zip(stages if traced else (), (None, 24, 48)):
        model = getattr(stage, "_model", None)
        if model is not None:
            stage._model = _compiled(model, side)
    return MTCNN(stages=stages)


def _compiled(model: Any, side: int | None = None) -> Any:
    """A Keras model's forward pass as one TensorFlow graph.

    mtcnn calls its three small networks eagerly, op by op, and that dispatch cost more
    than the arithmetic: traced once, detection takes about a third less time and finds the
    same boxes (bench/faces_speed.py). The input signature (any batch, any pyramid level
    for PNet) makes it one trace per network: relaxed shapes traced each network twice, and
    as the three share this function's code, TensorFlow counted their traces together and
    warned of "tf.function retracing" on every run.
    """
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 3], tf.float32)])
    def forward(x: Any) -> Any:
        return model(x, training=False)

    return forward
