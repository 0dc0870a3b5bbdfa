"""Batched age prediction over face-crop files (evaluation, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.persist import AgeModel


def predict_files(model: AgeModel, paths: list[str], batch_size: int = 64,
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Ages in years for face-crop image files, in the order given; `on_batch(n)` after each
    batch, for a progress bar (thousands of faces take minutes on a CPU)."""
    from models.data import face_dataset

    out = np.empty(len(paths), dtype=np.float32)
    pos = 0
    for batch in face_dataset(paths, None, model.image_size, batch_size).as_numpy_iterator():
        ages = model.predict_faces(batch, batch_size=batch_size)
        out[pos : pos + len(ages)] = ages
        pos += len(ages)
        if on_batch:
            on_batch(len(ages))
    return out
