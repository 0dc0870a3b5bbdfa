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

from models.faces import (
    FaceDetector,
    PhotoError,
    crop_face,
    decode_photo,
    largest_face,
    read_photo,
    resolve_photo_path,
)
from models.persist import AgeModel

SCORE_COLUMNS = ["photo_id", "age", "face_count", "status", "reason", "detail"]


@dataclass
class PreparedPhoto:
    """One photo after the CPU-side work: a face crop, or why there is none."""

    photo_id: int
    face: np.ndarray | None
    face_count: int
    status: str  # "ok", "no_face" or "quarantined"
    reason: str = ""
    detail: str = ""


def prepare_batch(
    photos: list[tuple[int, bytes | PhotoError]], detector: FaceDetector, image_size: int
) -> list[PreparedPhoto]:
    """Decode a batch, find faces in one detector call, crop each photo's largest face.

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
            out[i].face = crop_face(image, best, image_size, margin=detector.margin)
            out[i].status = "ok"
    return out


def faces_from_photo(
    data: bytes, detector: FaceDetector, size: int
) -> tuple[np.ndarray | None, int]:
    """One photo through `prepare_batch`: the largest face as a size x size crop (None when
    there is none) and the face count. Raises `PhotoError` for a photo that cannot be read."""
    [prepared] = prepare_batch([(0, data)], detector, size)
    if prepared.status == "quarantined":
        raise PhotoError(prepared.reason, prepared.detail)
    return prepared.face, prepared.face_count


def score_batch(
    photos: list[tuple[int, bytes]], model: AgeModel, detector, batch_size: int = 32
) -> pd.DataFrame:
    """Photo bytes in, one row per photo out (SCORE_COLUMNS); the step a distributed engine
    would map over partitions of photos."""
    return _estimate(prepare_batch(photos, detector, model.image_size), model, batch_size)


def _estimate(prepared: list[PreparedPhoto], model: AgeModel, batch_size: int) -> pd.DataFrame:
    ages = np.full(len(prepared), np.nan, dtype=np.float32)
    with_face = [i for i, p in enumerate(prepared) if p.face is not None]
    if with_face:
        faces = np.stack([prepared[i].face for i in with_face])
        ages[with_face] = model.predict_faces(faces, batch_size=batch_size)
    return pd.DataFrame(
        {
            "photo_id": np.array([p.photo_id for p in prepared], dtype=np.int64),
            "age": ages,
            "face_count": np.array([p.face_count for p in prepared], dtype=np.int16),
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
) -> Iterator[pd.DataFrame]:
    """Yield one scored frame (SCORE_COLUMNS) per batch of ``(photo_id, relative_path)``.

    While the model scores batch k, a worker thread reads, decodes and detects faces in
    batch k+1. Never raises for a bad photo: it comes back "quarantined" with a reason.
    """
    root = Path(photo_root)
    size = model.image_size

    def prepare(chunk: list[tuple[int, str]]) -> list[PreparedPhoto]:
        return prepare_batch([(pid, _read(root, rel)) for pid, rel in chunk], detector, size)

    chunks = _chunks(photos, batch_size)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="photos") as pool:
        first = next(chunks, None)
        pending: Future | None = pool.submit(prepare, first) if first else None
        while pending is not None:
            following = next(chunks, None)
            ahead = pool.submit(prepare, following) if following else None
            yield _estimate(pending.result(), model, batch_size)
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
