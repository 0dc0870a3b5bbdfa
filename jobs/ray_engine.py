"""`ageseg rescore --engine ray`: the photos of a range of days scored on Ray Data.

The only module that imports `ray` (the `ray` extra). The driver (this process) lists each
day's photos from the database, day by day, and hands them to Ray in chunks of whole days,
cut into the very batches `nightly` forms (the day's photos in photo_id order,
`--batch-size` at a time). Ray Data runs them through two stages, the way its batch
inference examples do, so that a cluster's CPUs and GPUs are used apart:

1. `PhotoPreparer` (CPU, `num_cpus=1` per actor, one face detector each): read the photo
   files from the photo root (a shared mount on a cluster), decode, find faces, crop;
2. `PhotoScorer` (one model each; `num_gpus=1` per actor on a cluster with GPUs, a CPU
   otherwise): the crops through the model, one `estimate_batch` call per batch.

Each batch is prepared and scored exactly as `score_batch` does it in `nightly`, so the
ages are the same. The scores stream back to the driver, which writes each day, in date
order, with the same `write_scored_day` that `nightly` ends in: the outputs equal running
`nightly` for each day.

What is shared with `nightly` is called, not copied: the batch cutting (`cut_batches`), the
packing of prepared photos between stages (models/score.py), the model check
(jobs/preflight.check_model) and the day writer (analytics/pipeline.write_day). The stage
sizes are planned in jobs/ray_plan.py, without Ray. What stays here is Ray's own: the
actors, the pipeline of stages and the driver loop that writes days in order.

Days are written in date order because each day's recommendations and compliance summaries
read the earlier days of their trailing window from disk, as they do when `nightly` runs
day after day.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import pandas as pd
import ray
import sqlalchemy as sa

from analytics.config import NightConfig
from analytics.pipeline import RunSummary, day_is_current, empty_scores, write_day
from jobs.errors import JobFailed
from jobs.preflight import check_model
from jobs.ray_plan import Plan, RayOptions, plan_stages
from jobs.scoring_setup import batch_size_for, load_scoring, make_detector, new_run_id
from jobs.settings import Settings
from models.score import (
    ScoringStats,
    cut_batches,
    estimate_batch,
    pack_prepared,
    prepare_batch,
    read_photos,
    unpack_prepared,
)
from sql import queries
from sql.engine import with_retries

log = logging.getLogger("ageseg")

CHUNKS_PER_CALL = 4  # score batches per Ray batch: fewer round trips, little lost on a retry
__all__ = ["MODEL_ON", "PhotoPreparer", "PhotoScorer", "RayOptions", "connect",
           "rescore_on_ray"]


class PhotoPreparer:
    """Stage 1, one per Ray actor on one CPU: its own face detector (a LiteRT interpreter
    is not thread-safe), loaded once; each call prepares a batch of score batches
    (`day`, `photo_id` list, `path` list) into crops, packed for the model stage."""

    def __init__(self, settings: Settings):
        from models.crop import contract_for
        from models.faces import WholeImageDetector
        from models.persist import DEFAULT_MODEL_PATH, read_card

        self.settings = settings
        card = read_card(settings.model_path or DEFAULT_MODEL_PATH)  # no model needed here
        self.detector = (WholeImageDetector() if settings.photos_are_faces
                         else make_detector(settings.detector, settings.min_face_size,
                                            settings.face_confidence))
        self.detector.warm_up()
        self.image_size = int(card["image_size"])
        self.contract = contract_for(card, self.detector.name)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for day, ids, paths in zip(batch["day"], batch["photo_id"], batch["path"]):
            photos = read_photos(zip(map(int, ids), map(str, paths)), self.settings.photo_root)
            prepared = prepare_batch(photos, self.detector, self.image_size, self.contract)
            rows.append({"day": day, **pack_prepared(prepared, self.image_size)})
        return pd.DataFrame(rows)


class PhotoScorer:
    """Stage 2, one per Ray actor (a GPU each on a cluster with GPUs): the model loaded
    once; each call scores a batch of prepared score batches with `estimate_batch`. Each
    row also says where and on what the model ran (MODEL_ON: "GPU|keras|float16"), for the driver's
    scoring line; the driver drops it before writing."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.model, _ = load_scoring(settings)
        self.batch_size = batch_size_for(settings, self.model.device == "GPU")

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        frames = [
            estimate_batch(unpack_prepared(row), self.model, self.batch_size,
                           challenge_age=self.settings.challenge_age).assign(
                day=row["day"], **{MODEL_ON: f"{self.model.device}|{self.model.runtime}|"
                                  f"{self.model.precision}"})
            for row in batch.to_dict("records")
        ]
        return pd.concat(frames, ignore_index=True)


MODEL_ON = "model_on"

def rescore_on_ray(
    settings: Settings,
    engine: sa.Engine,
    days: Sequence[dt.date],
    config: NightConfig,
    options: RayOptions,
    *,
    job: str = "rescore",
    force: bool = False,
    on_skip: Callable[[dt.date, str], object] | None = None,
    scorer: type = PhotoScorer,
    preparer: type | None = PhotoPreparer,
    source: sa.Engine | None = None,
) -> Iterator[RunSummary]:
    """Score `days` on Ray and write them in date order; yield each day's summary once it is
    written. Days this model version already wrote with these settings are skipped unless
    `force`. `scorer` stands in for PhotoScorer in tests and the bench, and `preparer`
    None leaves the preparation stage out (the bench's stub scorer reads no photo). Photos
    and purchases are read from `source` (default: `engine`); records go to `engine`."""
    source = source or engine
    _, card = check_model(settings)  # here, without TensorFlow: not in every worker
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
        plan = plan_stages(ray.cluster_resources(), options, settings)
        log.info("%s on Ray: %d day(s); %d preparation actor(s), %d model actor(s) (%g GPU "
                 "each), batches of %d", job, len(todo), plan.prep_actors, plan.model_actors,
                 plan.gpus_per_model, plan.batch_size)
        settings = dataclasses.replace(settings, batch_size=plan.batch_size)
        for chunk in _day_chunks(source, todo, options.chunk_photos):
            for day, photos, scores, started, stats in _scored_days(
                    chunk, settings, plan, scorer, preparer):
                summary = _write_day(engine, day, photos, scores, config, version, card, job,
                                     started, source)
                summary.scoring = stats
                yield summary


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
    chunk: list[tuple[dt.date, pd.DataFrame, float]], settings: Settings, plan: Plan,
    scorer: type, preparer: type | None,
) -> Iterator[tuple[dt.date, pd.DataFrame, pd.DataFrame, float, ScoringStats]]:
    """(day, photos, scores, listing time, scoring stats) for each day of the chunk, in date
    order, as soon as every photo of the day has come back: the driver writes a day while
    Ray scores the next ones, and holds the scores of the days in flight only. A day's
    scoring time runs from the previous day's last score (or the chunk's start) to its own
    last: the days overlap in the stages, so these times add up to the chunk's wall time."""
    pending = list(chunk)
    seen: dict[str, set[int]] = {}
    parts: dict[str, list[pd.DataFrame]] = {}
    model_on = f"{'GPU' if plan.gpus_per_model else 'CPU'}|keras|{settings.precision}"
    mark = time.monotonic()

    def complete() -> Iterator[tuple[dt.date, pd.DataFrame, pd.DataFrame, float,
                                     ScoringStats]]:
        nonlocal mark
        while pending and len(seen.get(pending[0][0].isoformat(), ())) >= len(pending[0][1]):
            day, photos, started = pending.pop(0)
            seen.pop(day.isoformat(), None)
            frames = parts.pop(day.isoformat(), [])
            now = time.monotonic()
            device, runtime, precision = model_on.split("|", 2)
            stats = ScoringStats(prep_workers=plan.prep_actors, device=device,
                                 precision=precision, runtime=runtime,
                                 photos=len(photos), seconds=now - mark,
                                 engine=f"Ray, {plan.model_actors} model actor"
                                        f"{'s' if plan.model_actors != 1 else ''}")
            mark = now
            yield day, photos, pd.concat(frames, ignore_index=True) if frames else \
                empty_scores(), started, stats

    items = [{"day": day.isoformat(), "photo_id": ids, "path": paths}
             for day, photos, _ in chunk
             for ids, paths in map(_columns, cut_batches(zip(
                 photos["photo_id"].tolist(), photos["path"].tolist()), settings.batch_size))]
    yield from complete()  # leading days without photos
    if items:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = sys.stderr.isatty()
        context.execution_options.preserve_order = True  # days come back whole, in order
        dataset = _pipeline(ray.data.from_items(items), settings, plan, scorer, preparer)
        try:
            for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                batch = table.to_pandas()  # numpy dtypes, as score_batch made them
                if MODEL_ON in batch and len(batch):  # what the model actors say they ran
                    model_on = str(batch[MODEL_ON].iloc[0])
                batch = batch.drop(columns=MODEL_ON, errors="ignore")
                for day, part in batch.groupby("day", sort=False):
                    seen.setdefault(str(day), set()).update(part["photo_id"].tolist())
                    parts.setdefault(str(day), []).append(part.drop(columns="day"))
                yield from complete()
        except ray.exceptions.RayError as exc:
            raise JobFailed(f"scoring on Ray failed: {_first_line(exc)}") from exc
    yield from complete()
    if pending:
        day, photos = pending[0][:2]
        raise JobFailed(f"Ray returned scores for {len(seen.get(day.isoformat(), ()))} of the "
                        f"{len(photos)} photos of {day}; it and later days were left as "
                        "they were")


def _pipeline(items, settings: Settings, plan: Plan, scorer: type, preparer: type | None):
    """The two stages over the score batches. An actor whose process dies (kill -9, out of
    memory, a lost node) is restarted and its unfinished batches run again: Ray Data's
    defaults for actor pools, which Ray 2.60 no longer wants passed (no max_restarts here);
    the pool sizes go in `compute`, as Ray 2.51 wants instead of `concurrency`."""
    kwargs = {"fn_constructor_kwargs": {"settings": settings}, "batch_size": CHUNKS_PER_CALL,
              "batch_format": "pandas"}
    if preparer is not None:
        items = items.map_batches(
            preparer, compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.prep_actors),
            num_cpus=1, **kwargs)
    return items.map_batches(scorer, compute=ray.data.ActorPoolStrategy(size=plan.model_actors),
                             num_cpus=plan.cpus_per_model, num_gpus=plan.gpus_per_model or None,
                             **kwargs)


def _columns(batch: list[tuple[int, str]]) -> tuple[list[int], list[str]]:
    """A score batch as the two list columns a Ray item carries."""
    return [int(pid) for pid, _ in batch], [str(path) for _, path in batch]


def _write_day(
    engine: sa.Engine, day: dt.date, photos: pd.DataFrame, scores: pd.DataFrame,
    config: NightConfig, version: str, card: dict, job: str, started: float,
    source: sa.Engine,
) -> RunSummary:
    """Ray's scores for `day`, checked complete and put back in the photos' order, written
    by the day writer `nightly` uses."""
    scores = scores.drop_duplicates("photo_id")  # a retried batch must never count twice
    if set(scores["photo_id"]) != set(photos["photo_id"]):
        raise JobFailed(f"Ray returned scores for {len(scores)} of the {len(photos)} photos "
                        f"of {day}; the day's outputs were left as they were")
    # One row per photo in the photos' order, as nightly's scorer returns them.
    scores = photos[["photo_id"]].merge(scores, on="photo_id", how="left")[list(scores.columns)]
    run_id = new_run_id(day)
    summary = write_day(engine, day, photos, scores, config, model_version=version, card=card,
                        job=job, run_id=run_id, started=started, source=source)
    log.info("%s %s: %d photos written (run %s)", job, day, len(photos), run_id)
    return summary


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
