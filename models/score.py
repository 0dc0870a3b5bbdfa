"""Photos become ages: read, decode, find the shopper's face, estimate the age, in batches.

`score_batch` is the unit of work: photo bytes in, ages and face counts out, with no state
beyond the loaded model and detector. `score_photos` streams a day's photos through it:
`prep_workers` threads prepare batches (disk read, decode, face detection), each with its
own detector, while the model scores the oldest prepared batch. One core's preparation
(about 13 ms a scene) would otherwise cap the whole night, whatever the model runs on;
LiteRT's `invoke` and Pillow's decode and resize release the GIL, so threads scale with
cores. Batches come back in order, each prepared exactly as on one thread, so the output
does not depend on the number of workers; at most `prep_workers + 2` batches of pixels are
held at a time, so memory does not grow with the number of photos.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.crop import CropContract, contract_for, crop_face
from models.faces import FaceBox, FaceDetector, largest_face
from models.persist import AgeModel
from models.photos import PhotoError, decode_photo, read_photo, resolve_photo_path
from models.quality import HANDLED, HandledRanges, face_quality

# How sure an estimate is. "ok": one face, confidently detected. The next three are aged
# too but flagged: "several_faces" (the largest was taken: is it the shopper?),
# "low_confidence" (under the detector's `confident` level: a child's or a turned face, or
# not a face) and "low_quality" (the face crop is outside the camera conditions the model
# handles: too dark, too bright, too flat or too blurred; models/quality.py). Then photos
# without an age: "no_face" and "quarantined" (unreadable).
STATUSES = ("ok", "several_faces", "low_confidence", "low_quality", "no_face", "quarantined")
AGED = STATUSES[:4]

# The quarantine reason of a photo the face detector raised on (a runtime fault, not a bad
# photo file): the photo is set aside and the rest of the day goes on.
DETECTOR_FAILED = "detector_failed"

# The face's quality signals (models/quality.py), NaN without a face: restricted outputs only.
QUALITY_COLUMNS = ["sharpness", "exposure_mean", "exposure_std"]
SCORE_COLUMNS = ["photo_id", "age", "p_under", "face_count", "face_confidence", "face_px",
                 *QUALITY_COLUMNS, "status", "reason", "detail"]
# The numeric columns' dtypes; the rest are strings.
SCORE_DTYPES = {"photo_id": "int64", "age": "float32", "p_under": "float64",
                "face_count": "int16", "face_confidence": "float32", "face_px": "int16",
                **{c: "float32" for c in QUALITY_COLUMNS}}


# How the scoring line names each runtime (`AgeModel.runtime`, `LiteRTModel.runtime`).
RUNTIME_NAMES = {"keras": "Keras", "litert": "LiteRT"}


def empty_scores() -> pd.DataFrame:
    """The scores of no photos: no rows, the columns and dtypes of `score_batch`."""
    return pd.DataFrame({c: pd.Series(dtype=SCORE_DTYPES.get(c, str)) for c in SCORE_COLUMNS})


@dataclass
class PreparedPhoto:
    """One photo after the CPU-side work: a face crop, or why there is none."""

    photo_id: int
    face: np.ndarray | None
    face_count: int
    status: str  # one of STATUSES
    reason: str = ""
    detail: str = ""
    confidence: float = float("nan")  # the detector's, for the face that was aged
    face_px: int = 0  # side of the square the model saw, in photo pixels


# A prepared batch crosses a process boundary (Ray's preparation actors to its model actors)
# as plain columns: a list per field and the crops stacked into one bytes value.
PACKED = ("photo_id", "face_count", "status", "reason", "detail", "confidence", "face_px")


def pack_prepared(prepared: list[PreparedPhoto], image_size: int) -> dict:
    """A prepared batch as plain columns: a list per field, the crops of the photos with a
    face stacked into one bytes value."""
    faces = [p.face for p in prepared if p.face is not None]
    stacked = np.stack(faces) if faces else np.zeros((0, image_size, image_size, 3), np.uint8)
    packed: dict = {name: [getattr(p, name) for p in prepared] for name in PACKED}
    packed["has_face"] = [p.face is not None for p in prepared]
    packed["faces"] = np.ascontiguousarray(stacked, np.uint8).tobytes()
    packed["image_size"] = image_size
    return packed


def unpack_prepared(row: dict) -> list[PreparedPhoto]:
    """`pack_prepared` undone."""
    size = int(row["image_size"])
    faces = iter(np.frombuffer(row["faces"], np.uint8).reshape(-1, size, size, 3))
    return [PreparedPhoto(int(pid), next(faces) if has else None, int(count), str(status),
                          str(reason), str(detail), float(conf), int(px))
            for pid, count, status, reason, detail, conf, px, has in zip(
                *(row[name] for name in PACKED), row["has_face"])]


def cut_batches(photos: Iterable[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    """The day's `(photo_id, path)` pairs cut into score batches, `size` at a time in the
    order given (the day's photo_id order). The one rule: `score_photos` and the Ray engine
    both cut with it, so every `estimate_batch` call sees the same photos in either."""
    batch: list[tuple[int, str]] = []
    for item in photos:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def prepare_batch(
    photos: list[tuple[int, bytes | PhotoError]], detector: FaceDetector, image_size: int,
    contract: CropContract,
) -> list[PreparedPhoto]:
    """Decode a batch, find faces in one detector call, cut each photo's largest face out
    as the model's crop contract says.

    One batched detector call instead of one per photo: MTCNN's per-call overhead is most
    of its cost on a CPU. A photo that cannot be read or decoded becomes a quarantine record.
    """
    out: list[PreparedPhoto] = []
    images: list[tuple[int, np.ndarray]] = []
    side = detector.decode_side(image_size)
    for pid, data in photos:
        try:
            if isinstance(data, PhotoError):
                raise data
            images.append((len(out), decode_photo(data, max_side=side)))
            out.append(PreparedPhoto(pid, None, 0, "no_face"))
        except PhotoError as exc:
            out.append(PreparedPhoto(pid, None, 0, "quarantined", exc.reason, exc.detail))
    found = _detect(detector, [image for _, image in images]) if images else []
    for (i, image), boxes in zip(images, found):
        if isinstance(boxes, Exception):
            out[i].status, out[i].reason = "quarantined", DETECTOR_FAILED
            out[i].detail = f"{type(boxes).__name__}: {boxes}"[:500]
            continue
        best = largest_face(boxes)
        out[i].face_count = len(boxes)
        if best is not None:
            out[i].face = crop_face(image, best, image_size, contract)
            out[i].status = ("low_confidence" if best.confidence < detector.confident
                             else "several_faces" if len(boxes) > 1 else "ok")
            out[i].confidence = best.confidence
            out[i].face_px = round(contract.square(best)[2])
    return out


def _detect(detector: FaceDetector, images: list[np.ndarray]
            ) -> list[list[FaceBox] | Exception]:
    """Boxes per image in one detector call; if that call raises, one call per image, so
    only the image the detector fails on is set aside (its exception in its place)."""
    try:
        return list(detector.detect_many(images))
    except Exception:  # noqa: BLE001 (a detector fault must not end the night)
        pass
    found: list[list[FaceBox] | Exception] = []
    for image in images:
        try:
            found.append(detector.detect(image))
        except Exception as exc:  # noqa: BLE001
            found.append(exc)
    return found


def faces_from_photo(
    data: bytes, detector: FaceDetector, size: int, contract: CropContract | None = None
) -> tuple[np.ndarray | None, int]:
    """One photo through `prepare_batch`: the largest face as a size x size crop (None when
    there is none) and the face count. Raises `PhotoError` for a photo that cannot be read.
    Without `contract`, the detector's calibrated default (models/crop.py)."""
    contract = contract or contract_for({}, detector.name)
    [prepared] = prepare_batch([(0, data)], detector, size, contract)
    if prepared.status == "quarantined":
        raise PhotoError(prepared.reason, prepared.detail)
    return prepared.face, prepared.face_count


def score_batch(
    photos: list[tuple[int, bytes]], model: AgeModel, detector, batch_size: int = 32,
    challenge_age: float | None = None,
) -> pd.DataFrame:
    """Photo bytes in, one row per photo out (SCORE_COLUMNS); the step a distributed engine
    would map over partitions of photos. With `challenge_age`, `p_under` is the model's
    calibrated P(true age < challenge_age) (NaN for a model without a distribution)."""
    contract = contract_for(model.card, detector.name)
    return estimate_batch(prepare_batch(photos, detector, model.image_size, contract), model,
                          batch_size, challenge_age)


def estimate_batch(prepared: list[PreparedPhoto], model: AgeModel, batch_size: int,
                   challenge_age: float | None = None,
                   handled: HandledRanges = HANDLED) -> pd.DataFrame:
    """The model's half of `score_batch`: prepared photos in, one row per photo out.

    The quality signals are measured here, on the crops the model sees, so every engine
    (this process, Ray's model actors) measures them alike from what it already carries.
    A face outside `handled` is aged but marked "low_quality", unless the detector already
    marked it "low_confidence".
    """
    ages = np.full(len(prepared), np.nan, dtype=np.float32)
    under = np.full(len(prepared), np.nan, dtype=np.float64)
    quality = np.full((len(prepared), len(QUALITY_COLUMNS)), np.nan, dtype=np.float32)
    statuses = [p.status for p in prepared]
    with_face = [i for i, p in enumerate(prepared) if p.face is not None]
    for i in with_face:
        q = face_quality(prepared[i].face)
        quality[i] = (q.sharpness, q.exposure_mean, q.exposure_std)
        if statuses[i] in ("ok", "several_faces") and handled.outside(q):
            statuses[i] = "low_quality"
    if with_face:
        faces = np.stack([prepared[i].face for i in with_face])
        ages[with_face], probs, head = model.predict_all(faces, batch_size=batch_size)
        p = None if challenge_age is None else model.p_under(probs, head, challenge_age)
        if p is not None:
            under[with_face] = p
    return pd.DataFrame(
        {
            "photo_id": np.array([p.photo_id for p in prepared], dtype=np.int64),
            "age": ages,
            "p_under": under,
            "face_count": np.array([p.face_count for p in prepared], dtype=np.int16),
            "face_confidence": np.array([p.confidence for p in prepared], dtype=np.float32),
            "face_px": np.array([p.face_px for p in prepared], dtype=np.int16),
            **{c: quality[:, k] for k, c in enumerate(QUALITY_COLUMNS)},
            "status": statuses,
            "reason": [p.reason for p in prepared],
            "detail": [p.detail for p in prepared],
        },
        columns=SCORE_COLUMNS,
    )


def _read(root: Path, rel_path: str) -> bytes | PhotoError:
    try:
        return read_photo(resolve_photo_path(root, rel_path))
    except PhotoError as exc:
        return exc


def read_photos(
    photos: Iterable[tuple[int, str]], photo_root: Path
) -> list[tuple[int, bytes | PhotoError]]:
    """``(photo_id, relative_path)`` → ``(photo_id, bytes or why not)``, as `score_batch`
    takes them: a photo that cannot be read becomes a quarantine record there, not an error."""
    root = Path(photo_root)
    return [(pid, _read(root, rel)) for pid, rel in photos]


@dataclass
class ScoringStats:
    """What a `score_photos` run did and where its time went, for the job's scoring line:
    an operator reads from it which side to grow, the photo preparation or the model."""

    prep_workers: int = 1
    device: str = "CPU"
    precision: str = "float32"
    runtime: str = "keras"  # what ran the model: "keras" or "litert" (models/litert.py)
    photos: int = 0
    seconds: float = 0.0  # wall time, first photo read to last row out
    model_seconds: float = 0.0  # the model at work
    model_waited: float = 0.0  # the model idle, waiting for the next prepared batch
    prep_busy: float = 0.0  # preparation at work, summed over the workers
    engine: str = ""  # "" in this process; "Ray, 2 model actors" when Ray scored the photos

    @property
    def photos_per_second(self) -> float:
        return self.photos / self.seconds if self.seconds > 0 else 0.0

    @property
    def model_wait_share(self) -> float:
        """Share of the time the model waited for photos (grow the prep workers)."""
        return min(1.0, self.model_waited / self.seconds) if self.seconds > 0 else 0.0

    @property
    def prep_wait_share(self) -> float:
        """Share of the prep workers' time spent idle, waiting for the model to take their
        batches (grow the model side: a GPU, a larger batch)."""
        capacity = self.prep_workers * self.seconds
        return max(0.0, 1.0 - self.prep_busy / capacity) if capacity > 0 else 0.0

    def line(self, verbose: bool = False) -> str:
        """`scored 1,000 photos in 8.1 s (123.4 photos/s, 2 prep workers, model on CPU,
        LiteRT int8 weights)`, one line a log reader can parse; `verbose` adds the waiting
        shares."""
        noun = "prep actor" if self.engine else "prep worker"
        workers = f"{self.prep_workers} {noun}{'s' if self.prep_workers != 1 else ''}"
        runtime = RUNTIME_NAMES.get(self.runtime, self.runtime)
        text = (f"scored {self.photos:,} photos in {self.seconds:.1f} s "
                f"({self.photos_per_second:.1f} photos/s, {workers}, model on {self.device}, "
                f"{runtime} {self.precision})")
        if self.engine:  # Ray's stages overlap across days: no waiting shares measured
            return f"{text} on {self.engine}"
        if verbose:
            text += (f"; model waited for photos {100 * self.model_wait_share:.0f} % of the "
                     f"time, photos waited for the model {100 * self.prep_wait_share:.0f} %")
        return text


def score_photos(
    photos: Iterable[tuple[int, str]],
    photo_root: Path,
    model: AgeModel,
    detector,
    batch_size: int = 32,
    challenge_age: float | None = None,
    prep_workers: int = 1,
    stats: ScoringStats | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield one scored frame (SCORE_COLUMNS) per batch of ``(photo_id, relative_path)``,
    in order.

    `prep_workers` threads read, decode and detect faces in the next batches while the model
    scores the current one; each thread has its own detector (`detector` and its clones:
    LiteRT interpreters must not be shared between threads). Never raises for a bad photo:
    it comes back "quarantined" with a reason. `stats`, when given, is filled in as it goes.
    """
    if prep_workers < 1:
        raise ValueError(f"prep_workers must be at least 1, got {prep_workers}")
    stats = stats if stats is not None else ScoringStats()
    stats.prep_workers = prep_workers
    stats.device = str(getattr(model, "device", "CPU"))
    stats.precision = str(getattr(model, "precision", "float32"))
    stats.runtime = str(getattr(model, "runtime", "keras"))
    root = Path(photo_root)
    size = model.image_size
    contract = contract_for(model.card, detector.name)
    own = _thread_detectors(detector, prep_workers)
    lock = threading.Lock()

    def prepare(chunk: list[tuple[int, str]]) -> list[PreparedPhoto]:
        started = time.monotonic()
        prepared = prepare_batch([(pid, _read(root, rel)) for pid, rel in chunk],
                                 own.detector, size, contract)
        with lock:
            stats.prep_busy += time.monotonic() - started
        return prepared

    started = time.monotonic()
    chunks = cut_batches(photos, batch_size)
    pool = ThreadPoolExecutor(max_workers=prep_workers, thread_name_prefix="photos",
                              initializer=own.take)
    try:
        # At most prep_workers + 1 batches submitted and not yet taken, plus the one the
        # model is scoring: prep_workers + 2 batches of pixels, however long the day.
        ahead: deque[Future] = deque()
        for chunk in chunks:
            ahead.append(pool.submit(prepare, chunk))
            if len(ahead) > prep_workers:
                yield _score_next(ahead, model, batch_size, challenge_age, stats)
        while ahead:
            yield _score_next(ahead, model, batch_size, challenge_age, stats)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        stats.seconds = time.monotonic() - started


def _score_next(ahead: deque[Future], model: AgeModel, batch_size: int,
                challenge_age: float | None, stats: ScoringStats) -> pd.DataFrame:
    """Wait for the oldest prepared batch and score it, timing both."""
    waiting = time.monotonic()
    prepared = ahead.popleft().result()
    scoring = time.monotonic()
    frame = estimate_batch(prepared, model, batch_size, challenge_age)
    done = time.monotonic()
    stats.model_waited += scoring - waiting
    stats.model_seconds += done - scoring
    stats.photos += len(frame)
    return frame


class _ThreadDetectors:
    """One detector per prep thread: each thread takes its own when it starts."""

    def __init__(self, detectors: list[Any]):
        self._spare: queue.SimpleQueue = queue.SimpleQueue()
        for detector in detectors:
            self._spare.put(detector)
        self._local = threading.local()

    def take(self) -> None:
        self._local.detector = self._spare.get_nowait()

    @property
    def detector(self) -> Any:
        return self._local.detector


def _thread_detectors(detector: Any, workers: int) -> _ThreadDetectors:
    """`detector` for the first thread and a clone for each other one."""
    if workers > 1 and not hasattr(detector, "clone"):
        raise TypeError(f"{type(detector).__name__} has no clone(): it cannot be used by "
                        f"{workers} prep workers at once")
    return _ThreadDetectors([detector, *(detector.clone() for _ in range(workers - 1))])
