"""Photos become ages: read, decode, find the shopper's face, estimate the age, in batches.

`score_batch` is the unit of work: photo bytes in, ages and face counts out, with no state
beyond the loaded model and detector. `score_photos` streams a day's photos through it,
preparing the next batch (disk read, decode, face detection) on worker threads while the
model runs on the current one, and holds at most two batches of pixels at a time, so memory
does not grow with the number of photos.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.crop import CropContract, contract_for, crop_face
from models.faces import (
    FaceDetector,
    PhotoError,
    decode_photo,
    largest_face,
    read_photo,
    resolve_photo_path,
)
from models.persist import AgeModel

# How sure an estimate is. "ok": one face, confidently detected. The next two are aged too
# but flagged: "several_faces" (the largest was taken: is it the shopper?) and
# "low_confidence" (under the detector's `confident` level: a child's or a turned face, or
# not a face). Then photos without an age: "no_face" and "quarantined" (unreadable).
STATUSES = ("ok", "several_faces", "low_confidence", "no_face", "quarantined")
AGED = STATUSES[:3]

SCORE_COLUMNS = ["photo_id", "age", "p_under", "face_count", "face_confidence", "face_px",
                 "status", "reason", "detail"]
# The numeric columns' dtypes; the rest are strings.
SCORE_DTYPES = {"photo_id": "int64", "age": "float32", "p_under": "float64",
                "face_count": "int16", "face_confidence": "float32", "face_px": "int16"}


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
    found = detector.detect_many([image for _, image in images]) if images else []
    for (i, image), boxes in zip(images, found):
        best = largest_face(boxes)
        out[i].face_count = len(boxes)
        if best is not None:
            out[i].face = crop_face(image, best, image_size, contract)
            out[i].status = ("low_confidence" if best.confidence < detector.confident
                             else "several_faces" if len(boxes) > 1 else "ok")
            out[i].confidence = best.confidence
            out[i].face_px = round(contract.square(best)[2])
    return out


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
    return _estimate(prepare_batch(photos, detector, model.image_size, contract), model,
                     batch_size, challenge_age)


def _estimate(prepared: list[PreparedPhoto], model: AgeModel, batch_size: int,
              challenge_age: float | None = None) -> pd.DataFrame:
    ages = np.full(len(prepared), np.nan, dtype=np.float32)
    under = np.full(len(prepared), np.nan, dtype=np.float64)
    with_face = [i for i, p in enumerate(prepared) if p.face is not None]
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
            "status": [p.status for p in prepared],
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


def score_photos(
    photos: Iterable[tuple[int, str]],
    photo_root: Path,
    model: AgeModel,
    detector,
    batch_size: int = 32,
    challenge_age: float | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield one scored frame (SCORE_COLUMNS) per batch of ``(photo_id, relative_path)``.

    While the model scores batch k, a worker thread reads, decodes and detects faces in
    batch k+1. Never raises for a bad photo: it comes back "quarantined" with a reason.
    """
    root = Path(photo_root)
    size = model.image_size
    contract = contract_for(model.card, detector.name)

    def prepare(chunk: list[tuple[int, str]]) -> list[PreparedPhoto]:
        return prepare_batch([(pid, _read(root, rel)) for pid, rel in chunk], detector, size,
                             contract)

    chunks = _chunks(photos, batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="photos") as pool:
        first = next(chunks, None)
        pending: Future | None = pool.submit(prepare, first) if first else None
        while pending is not None:
            following = next(chunks, None)
            ahead = pool.submit(prepare, following) if following else None
            yield _estimate(pending.result(), model, batch_size, challenge_age)
            pending = ahead


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
