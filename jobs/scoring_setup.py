"""Loading what scoring needs (model, detector) and the run ids, shared by the single-process
runner and the Ray engine; below both, so neither imports the other for it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
import uuid

from jobs.errors import JobFailed
from jobs.settings import DEFAULT_BATCH_SIZE, DEFAULT_GPU_BATCH_SIZE, Settings

log = logging.getLogger("ageseg")


def load_scoring(settings: Settings):
    """The model and face detector, loaded and warmed up once per process (or Ray actor)."""
    from models.faces import WholeImageDetector
    from models.persist import ModelFileError, ModelNotFound, load_model

    try:
        model = load_model(settings.model_path, precision=settings.precision)
    except (ModelNotFound, ModelFileError) as exc:
        raise JobFailed(str(exc)) from exc
    except ValueError as exc:  # e.g. --precision bf16 on a GPU
        raise JobFailed(str(exc)) from exc
    detector = (WholeImageDetector() if settings.photos_are_faces
                else make_detector(settings.detector, settings.min_face_size,
                                   settings.face_confidence))
    started = time.monotonic()
    model.warm_up(batch_size_for(settings, model.device == "GPU"))
    detector.warm_up()
    log.info("model %s (validation MAE %s years) ready in %.1fs on %s, %s", model.version,
             model.card["metrics"]["val_mae"], time.monotonic() - started, model.device,
             model.precision)
    return model, detector


def batch_size_for(settings: Settings, gpu: bool) -> int:
    """--batch-size, or the default for where the model runs: a GPU needs large batches to
    be kept busy, a CPU gains nothing past a few dozen faces."""
    if settings.batch_size:
        return settings.batch_size
    return DEFAULT_GPU_BATCH_SIZE if gpu else DEFAULT_BATCH_SIZE


def prep_workers_for(settings: Settings) -> int:
    """--prep-workers, or the cores this process may run on (its CPU affinity, which a
    container or `taskset` may set below the machine's count)."""
    if settings.prep_workers:
        return settings.prep_workers
    return available_cores()


def available_cores() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolved(settings: Settings, model) -> Settings:
    """Settings with the scoring defaults filled in for the loaded model."""
    return dataclasses.replace(settings,
                               batch_size=batch_size_for(settings, model.device == "GPU"),
                               prep_workers=prep_workers_for(settings))


def make_detector(name: str, min_face_size: int, confidence: float | None = None):
    """The named face detector, with its own default confidence cut-off unless given."""
    options = {"min_face_size": min_face_size}
    if confidence is not None:
        options["min_confidence"] = confidence
    if name == "mtcnn":
        from models.mtcnn import MtcnnDetector

        return MtcnnDetector(**options)
    from models.blazeface import BlazeFaceDetector

    return BlazeFaceDetector(**options)


def new_run_id(day: dt.date) -> str:
    return f"{day.isoformat()}-{uuid.uuid4().hex[:8]}"
