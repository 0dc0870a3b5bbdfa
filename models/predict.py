"""Batched age prediction over face-crop files (evaluation, benchmarks)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from models.prediction import CardModel as AgeModel  # either runtime (Keras, LiteRT)


def predict_files(model: AgeModel, paths: list[str], batch_size: int = 64,
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Ages in years for face-crop image files, in the order given; `on_batch(n)` after each
    batch, for a progress bar (thousands of faces take minutes on a CPU)."""
    return predict_files_distribution(model, paths, batch_size, on_batch)[0]


def predict_files_distribution(
    model: AgeModel, paths: list[str], batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(ages (N,), calibrated age distributions (N, K) or None) for face-crop files, in
    the order given; `on_batch(n)` after each batch, for progress."""
    return predict_files_all(model, paths, batch_size, on_batch)[:2]


def predict_files_all(
    model: AgeModel, paths: list[str], batch_size: int = 64,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """`predict_files_distribution` plus the calibrated P(under) head (N,) or None, for
    `AgeModel.p_under`."""
    from models.data import face_dataset

    ages = np.empty(len(paths), dtype=np.float32)
    probs: np.ndarray | None = None
    under: np.ndarray | None = None
    pos = 0
    for batch in face_dataset(paths, None, model.image_size, batch_size).as_numpy_iterator():
        age, dist, head = model.predict_all(batch, batch_size=batch_size)
        if dist is not None:
            if probs is None:
                probs = np.empty((len(paths), dist.shape[-1]), np.float32)
            probs[pos : pos + len(age)] = dist
        if head is not None:
            if under is None:
                under = np.empty(len(paths), np.float32)
            under[pos : pos + len(age)] = head
        ages[pos : pos + len(age)] = age
        pos += len(age)
        if on_batch:
            on_batch(len(age))
    return ages, probs, under
