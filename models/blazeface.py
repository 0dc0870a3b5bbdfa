"""BlazeFace: MediaPipe's single-shot face detector, the "back camera" model (256 px input).

Why it is the default: on 640x480 checkout scenes it finds the shopper as often as MTCNN and
the small second face almost as often, in a third to a half of MTCNN's time, because it is
one small network pass instead of an image pyramid and two refinement stages
(bench/faces_speed.py measures both in one run).

The network ships in this repository (`models/weights/face_detection_back.tflite`, Apache-2.0,
see `models/weights/NOTICE`) and runs on LiteRT (`ai-edge-litert`), Google's standalone
runtime for .tflite files; nothing is downloaded. What the network outputs is raw: 896 anchor
offsets and scores. Decoding them into boxes (anchors, sigmoid, weighted non-maximum
suppression) is this module's own code, following MediaPipe's published model card and
calculator options for this model. Each box comes with the network's two eye keypoints
(of its six: eyes, nose tip, mouth, ear tragions), which the crop uses to level the face.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.faces import FaceBox, check_detector_options, check_image
from models.photos import MAX_SIDE

WEIGHTS = Path(__file__).with_name("weights") / "face_detection_back.tflite"
INPUT_SIDE = 256
# SSD anchors of the back model: one 16x16 grid (stride 16, 2 anchors per cell) and one 8x8
# grid (stride 32, 6 anchors per cell: three layers of two share that stride): 896 in all.
_GRIDS = ((16, 2), (8, 6))
_NMS_IOU = 0.3
# Per anchor the network regresses 16 values: box centre offset and size (4), then six
# keypoints (x, y) in MediaPipe's order: the subject's right eye, left eye, nose tip, mouth
# centre, right ear tragion, left ear tragion. The eyes are values 4-7.
_EYES = slice(4, 8)


def anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1], in the order the network's outputs use."""
    centres = []
    for cells, per_cell in _GRIDS:
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class BlazeFaceDetector:
    """Faces as boxes in photo pixels, with the network's confidence.

    The photo is shrunk and letterboxed to 256x256 (its aspect kept, black bars), which is
    what the network was trained on. Boxes under `min_confidence` or smaller than
    `min_face_size` pixels are dropped; overlapping boxes are merged by score-weighted
    averaging, which steadies the box more than keeping only the best one.
    """

    name = "blazeface"
    confident = 0.75

    def __init__(self, min_face_size: int = 40, min_confidence: float = 0.5,
                 threads: int | None = None) -> None:
        check_detector_options(min_face_size, min_confidence)
        self.min_face_size = min_face_size
        self.min_confidence = min_confidence
        self.threads = threads
        self._interpreter: Any = None
        self._anchors = anchors()

    def decode_side(self, image_size: int) -> int:
        return MAX_SIDE

    def clone(self) -> BlazeFaceDetector:
        """The same options and an interpreter of its own: a LiteRT interpreter must not be
        used by two threads at once (it releases the GIL in `invoke`)."""
        return BlazeFaceDetector(self.min_face_size, self.min_confidence, self.threads)

    def warm_up(self) -> None:
        """Load the network now, so a broken install fails before any photo is read."""
        self.detect(np.zeros((480, 640, 3), np.uint8))

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return self.detect_many([image])[0]

    def detect_many(self, images: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """`detect` for each image. One network call per image: the model's graph has a
        fixed batch of one, and on a CPU batching would gain little at this size."""
        return [self._detect_one(image) for image in images]

    def _detect_one(self, image: np.ndarray) -> list[FaceBox]:
        height, width = check_image(image)
        tensor, scale, pad_x, pad_y = _letterbox(image)
        interpreter = self._network()
        interpreter.set_tensor(self._input, tensor[None])
        interpreter.invoke()
        raw_boxes = interpreter.get_tensor(self._boxes)[0]
        raw_scores = interpreter.get_tensor(self._scores)[0, :, 0]
        return self._decode(raw_boxes, raw_scores, scale, pad_x, pad_y, width, height)

    def _decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray, scale: float,
                pad_x: float, pad_y: float, width: int, height: int) -> list[FaceBox]:
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -80.0, 80.0)))  # no float32 overflow
        keep = np.flatnonzero(scores >= self.min_confidence)
        if keep.size == 0:
            return []
        # Offsets are in input pixels relative to the anchor centre; sizes in input pixels.
        centre = raw_boxes[keep, :2] / INPUT_SIDE + self._anchors[keep]
        size = raw_boxes[keep, 2:4] / INPUT_SIDE
        corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        # The eyes are offsets from the anchor centre too; averaged with their boxes.
        eyes = raw_boxes[keep, _EYES] / INPUT_SIDE + np.tile(self._anchors[keep], 2)
        merged = _weighted_nms(np.concatenate([corners, eyes], axis=1), scores[keep])
        boxes = []
        for values, confidence in merged:
            x0, y0, x1, y1 = values[:4]
            # From the letterboxed input back to photo pixels, eyes as the corners.
            ex = (values[[4, 6]] * INPUT_SIDE - pad_x) / scale
            ey = (values[[5, 7]] * INPUT_SIDE - pad_y) / scale
            order = np.argsort(ex)  # the eye on the image's left first
            eye_xy = (float(ex[order[0]]), float(ey[order[0]]), float(ex[order[1]]),
                      float(ey[order[1]]))
            # From the letterboxed input back to photo pixels.
            px0 = (x0 * INPUT_SIDE - pad_x) / scale
            py0 = (y0 * INPUT_SIDE - pad_y) / scale
            px1 = (x1 * INPUT_SIDE - pad_x) / scale
            py1 = (y1 * INPUT_SIDE - pad_y) / scale
            if min(px1 - px0, py1 - py0) < self.min_face_size:
                continue
            ix0, iy0 = max(0, round(px0)), max(0, round(py0))
            ix1, iy1 = min(width, round(px1)), min(height, round(py1))
            if ix1 > ix0 and iy1 > iy0:
                boxes.append(FaceBox(ix0, iy0, ix1 - ix0, iy1 - iy0, float(confidence),
                                     eyes=eye_xy))
        return boxes

    def _network(self) -> Any:
        if self._interpreter is None:
            self._interpreter = load_interpreter(WEIGHTS, self.threads)
            [inp] = self._interpreter.get_input_details()
            outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
            self._input = inp["index"]
            self._boxes, self._scores = outputs["regressors"], outputs["classificators"]
        return self._interpreter


def load_interpreter(path: Path, threads: int | None = None) -> Any:
    """A LiteRT interpreter for a .tflite file, tensors allocated."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"detector weights not found: {path}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from ai_edge_litert.interpreter import Interpreter

    with _quiet_stderr():  # LiteRT's C++ "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = Interpreter(model_path=str(path), num_threads=threads or 1)
        interpreter.allocate_tensors()
    return interpreter


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: the runtime's C++ logging writes there
    directly and has no switch. Python errors raised meanwhile still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _letterbox(image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The photo shrunk to fit 256x256 with its aspect kept, centred on black, scaled to
    [-1, 1]; with the scale and padding needed to map boxes back."""
    height, width = image.shape[:2]
    scale = INPUT_SIDE / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    img = Image.fromarray(image)
    factor = min(width // new_w, height // new_h)
    if factor >= 2:  # integer box-reduction first: much cheaper than one big resample
        img = img.reduce(factor)
    small = np.asarray(img.resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.float32)
    pad_x, pad_y = (INPUT_SIDE - new_w) // 2, (INPUT_SIDE - new_h) // 2
    tensor = np.full((INPUT_SIDE, INPUT_SIDE, 3), -1.0, np.float32)
    tensor[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = small / 127.5 - 1.0
    return tensor, scale, float(pad_x), float(pad_y)


def _weighted_nms(corners: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """Group boxes that overlap the best remaining one (IoU > 0.3) and average each group,
    weighted by score; the group keeps its best score. Columns after the first four (the
    corners the overlap is measured on), e.g. keypoints, are averaged alike."""
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    remaining = np.ones(len(scores), bool)
    out = []
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        overlap = _iou(corners[i, :4], corners[:, :4]) > _NMS_IOU
        group = remaining & overlap
        group[i] = True
        weights = scores[group][:, None]
        out.append(((corners[group] * weights).sum(0) / weights.sum(), float(scores[i])))
        remaining &= ~group
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)
