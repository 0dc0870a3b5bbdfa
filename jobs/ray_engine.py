"""`ageseg rescore --engine ray`: the photos of a range of days scored on Ray Data.

The only module that imports `ray` (the `ray` extra). The driver (this process) lists each
day's photos from the database, day by day, and hands them to Ray in chunks of whole days;
Ray Data maps `PhotoScorer` over them, one actor per worker, each loading the model and the
detector once and calling `score_batch` on the very batches `nightly` would form (the
day's photos in photo_id order, `--batch-size` at a time), so the ages are the same. Workers
read the photo files themselves from the photo root (a shared mount on a cluster). The
scores stream back to the driver, which writes each day, in date order, with the same
`write_scored_day` that `nightly` ends in: the outputs equal running `nightly` for each day.

Days are written in date order because each day's recommendations and compliance summaries
read the earlier days of their trailing window from disk, as they do when `nightly` runs
day after day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pandas as pd
import ray
import sqlalchemy as sa

from analytics.pipeline import (
    NightlyConfig,
    RunSummary,
    day_is_current,
    empty_scores,
    recorded_run,
    write_scored_day,
)
from jobs.runner import JobFailed, load_scoring, new_run_id
from jobs.settings import Settings
from models.score import read_photos, score_batch
from sql import queries
from sql.engine import with_retries

log = logging.getLogger("ageseg")

CHUNKS_PER_CALL = 4  # score_batch calls per Ray batch: fewer round trips, little lost on a retry


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run (the CLI's --ray-address, --workers, --gpus-per-worker)."""

    address: str | None = None  # None: start a local Ray on this machine
    workers: int | None = None  # None: one per CPU (per GPU share with gpus_per_worker)
    gpus_per_worker: float = 0.0
    chunk_photos: int = 100_000  # photos handed to Ray at a time (whole days)


class PhotoScorer:
    """One per Ray actor: the model and detector are loaded once, then each call scores a
    batch of chunks (`day`, `photo_id` list, `path` list) with `score_batch`."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model, self.detector = load_scoring(settings)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        frames = [
            score_batch(read_photos(zip(map(int, ids), map(str, paths)), self.settings.photo_root),
                        self.model, self.detector, self.settings.batch_size,
                        challenge_age=self.settings.challenge_age).assign(day=day)
            for day, ids, paths in zip(batch["day"], batch["photo_id"], batch["path"])
        ]
        return pd.concat(frames, ignore_index=True)


def rescore_on_ray(
    settings: Settings,
    engine: sa.Engine,
    days: Sequence[dt.date],
    config: NightlyConfig,
    options: RayOptions,
    *,
    job: str = "rescore",
    force: bool = False,
    on_skip: Callable[[dt.date, str], object] | None = None,
    scorer: type = PhotoScorer,
    source: sa.Engine | None = None,
) -> Iterator[RunSummary]:
    """Score `days` on Ray and write them in date order; yield each day's summary once it is
    written. Days this model version already wrote with these settings are skipped unless
    `force`. `scorer` stands in for PhotoScorer in the bench (scoring stubbed out). Photos
    and purchases are read from `source` (default: `engine`); records go to `engine`."""
    source = source or engine
    card = _checked_card(settings)
    version = str(card.get("version", "unversioned"))
    todo = []
    for day in days:
        if not force and day_is_current(config, day, version):
            if on_skip:
                on_skip(day, version)
        else:
            todo.append(day)
    if not todo:
        return
    with connect(options.address):
        workers = options.workers or _default_workers(options.gpus_per_worker)
        log.info("%s on Ray: %d day(s), %d worker(s)", job, len(todo), workers)
        for chunk in _day_chunks(source, todo, options.chunk_photos):
            for day, photos, scores, started in _scored_days(
                    chunk, settings, workers, options.gpus_per_worker, scorer):
                yield _write_day(engine, day, photos, scores, config, version, card, job,
                                 started, source)


@contextlib.contextmanager
def connect(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Join the Ray cluster at `address` ("auto", "ray://head:10001"), or start a local Ray
    on this machine (no dashboard) and stop it afterwards. An already
    initialised Ray (a test's, a notebook's) is used as it is."""
    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no phoning home from a job
    quiet = not log.isEnabledFor(logging.DEBUG)
    runtime_env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": os.environ.get(
        "TF_CPP_MIN_LOG_LEVEL", "2")}}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=not quiet)
        else:
            # On loopback only when Ray was imported with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
            # (jobs/rescore.py sets it for a local run); Ray 2.60's token authentication (on
            # by default) keeps others from submitting work to it either way.
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=not quiet,
                     runtime_env=runtime_env)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise JobFailed(f"cannot start or reach {where}: {_first_line(exc)}") from exc
    try:
        yield
    finally:
        ray.shutdown()


def _checked_card(settings: Settings) -> dict:
    """The model's card, read here (no TensorFlow in the driver); an untrained or unreadable
    model fails now, not in every worker."""
    from models.persist import DEFAULT_MODEL_PATH, ModelFileError, ModelNotFound, read_card

    path = settings.model_path or DEFAULT_MODEL_PATH
    try:
        card = read_card(path)
    except (ModelNotFound, ModelFileError, OSError, KeyError, ValueError) as exc:
        raise JobFailed(f"cannot read model {path}: {_first_line(exc)}") from exc
    if not (card.get("metrics") or {}).get("val_mae"):
        raise JobFailed(f"model {card.get('version')} has no validation figures: refusing to "
                        "present an untrained model's output as ages")
    return card


def _default_workers(gpus_per_worker: float) -> int:
    resources = ray.cluster_resources()
    if gpus_per_worker:
        return max(1, int(resources.get("GPU", 0) // gpus_per_worker))
    return max(1, int(resources.get("CPU", 1)))


def _day_chunks(
    engine: sa.Engine, days: Sequence[dt.date], chunk_photos: int,
) -> Iterator[list[tuple[dt.date, pd.DataFrame, float]]]:
    """(day, photos, listing time) for whole days until a chunk holds `chunk_photos` photos:
    the driver holds one chunk's photo list and scores, whatever the length of the range."""
    chunk: list[tuple[dt.date, pd.DataFrame, float]] = []
    size = 0
    for day in days:
        started = time.monotonic()
        photos = with_retries(lambda d=day: queries.photos_for_day(engine, d))
        chunk.append((day, photos, started))
        size += len(photos)
        if size >= chunk_photos:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _scored_days(
    chunk: list[tuple[dt.date, pd.DataFrame, float]], settings: Settings, workers: int,
    gpus_per_worker: float, scorer: type,
) -> Iterator[tuple[dt.date, pd.DataFrame, pd.DataFrame, float]]:
    """(day, photos, scores, listing time) for each day of the chunk, in date order, as soon
    as every photo of the day has come back: the driver writes a day while Ray scores the
    next ones, and holds the scores of the days in flight only."""
    pending = list(chunk)
    seen: dict[str, set[int]] = {}
    parts: dict[str, list[pd.DataFrame]] = {}

    def complete() -> Iterator[tuple[dt.date, pd.DataFrame, pd.DataFrame, float]]:
        while pending and len(seen.get(pending[0][0].isoformat(), ())) >= len(pending[0][1]):
            day, photos, started = pending.pop(0)
            seen.pop(day.isoformat(), None)
            frames = parts.pop(day.isoformat(), [])
            yield day, photos, pd.concat(frames, ignore_index=True) if frames else \
                empty_scores(), started

    items = [{"day": day.isoformat(), "photo_id": ids, "path": paths}
             for day, photos, _ in chunk
             for ids, paths in _batches(photos, settings.batch_size)]
    yield from complete()  # leading days without photos
    if items:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty()
        context.execution_options.preserve_order = True  # days come back whole, in order
        # A worker process that dies (kill -9, out of memory, a lost node) is restarted and
        # its unfinished batches run again: Ray Data's defaults for actor pools
        # (max_restarts=-1, max_task_retries=-1), which Ray 2.60 no longer wants passed.
        dataset = ray.data.from_items(items).map_batches(
            scorer, fn_constructor_kwargs={"settings": settings}, batch_size=CHUNKS_PER_CALL,
            batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=gpus_per_worker or None)
        try:
            for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                batch = table.to_pandas()  # numpy dtypes, as score_batch made them
                for day, part in batch.groupby("day", sort=False):
                    seen.setdefault(str(day), set()).update(part["photo_id"].tolist())
                    parts.setdefault(str(day), []).append(part.drop(columns="day"))
                yield from complete()
        except ray.exceptions.RayError as exc:
            raise JobFailed(f"scoring on Ray failed: {_first_line(exc)}") from exc
    yield from complete()
    if pending:
        day, photos, _ = pending[0]
        raise JobFailed(f"Ray returned scores for {len(seen.get(day.isoformat(), ()))} of the "
                        f"{len(photos)} photos of {day}; it and later days were left as "
                        "they were")


def _batches(photos: pd.DataFrame, size: int) -> Iterator[tuple[list[int], list[str]]]:
    """The day's photos cut exactly as `nightly` cuts them (photo_id order, `size` at a time),
    so each score_batch call sees the same photos as it does there."""
    ids, paths = photos["photo_id"].tolist(), photos["path"].tolist()
    for start in range(0, len(ids), size):
        yield ids[start:start + size], paths[start:start + size]


def _write_day(
    engine: sa.Engine, day: dt.date, photos: pd.DataFrame, scores: pd.DataFrame,
    config: NightlyConfig, version: str, card: dict, job: str, started: float,
    source: sa.Engine,
) -> RunSummary:
    scores = scores.drop_duplicates("photo_id")  # a retried batch must never count twice
    if set(scores["photo_id"]) != set(photos["photo_id"]):
        raise JobFailed(f"Ray returned scores for {len(scores)} of the {len(photos)} photos "
                        f"of {day}; the day's outputs were left as they were")
    # One row per photo in the photos' order, as nightly's scorer returns them.
    scores = photos[["photo_id"]].merge(scores, on="photo_id", how="left")[list(scores.columns)]
    run_id = new_run_id(day)
    with recorded_run(engine, run_id, job, day, version, holder=config.holder):
        summary = write_scored_day(engine, day, photos, scores, config, model_version=version,
                                   card=card, run_id=run_id, started=started, source=source)
    log.info("%s %s: %d photos written (run %s)", job, day, len(photos), run_id)
    return summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
