"""The night, read top to bottom: `run_nightly` (photos -> ages) and `write_scored_day`
(ages -> receipts' age groups -> the database's aggregates of the day's purchases ->
marketing and restricted tables -> Parquet -> quarantine, marker and the run's record).

Each step is a named function; the pure ones take data and a NightConfig, the `read_*`,
`write_*` and `record_*` ones do the I/O. Everything is computed before anything is written,
so a failure while reading the database or scoring leaves the previous outputs for the day
untouched; the day's files are then replaced together, each atomically (see
analytics/parquet.py), and compliance partitions past their retention period are deleted.
Every engine that scores photos (this process; Ray, jobs/ray_engine.py) ends in
`write_scored_day`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.camera_quality import PHOTO_COLUMNS, camera_alerts
from analytics.config import NightConfig
from analytics.day_tables import (
    CAMERA_QUALITY,
    ESTIMATES,
    SALES,
    DayTables,
    build_day_tables,
    purge_compliance,
    read_day_aggregates,
    read_window,
    write_day_tables,
)
from analytics.parquet import read_marker, remove_marker, write_marker
from models.persist import AgeModel
from models.photos import UNOPENED_REASONS, PhotoError, resolve_photo_path
from models.score import (
    AGED,
    QUALITY_COLUMNS,
    STATUSES,
    ScoringStats,
    empty_scores,
    score_photos,
)
from sql import queries
from sql.engine import with_retries

MARKETING_TABLE = SALES
RESTRICTED_TABLE = ESTIMATES


class PhotosUnavailable(RuntimeError):
    """The day has photo rows but not one of their files could be opened: the photo share
    is most likely not mounted, and writing the day would mark every shopper's age unknown."""


@dataclass
class RunSummary:
    run_id: str
    day: dt.date
    counts: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    quarantine: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0
    scoring: ScoringStats | None = None  # how the photos were scored, when this process did
    notes: list[str] = field(default_factory=list)  # lines for the log (how it estimated)
    # Lines for the night's summary: each store whose camera gives too many photos outside
    # the conditions the model handles (analytics/camera_quality.py).
    camera_alerts: list[str] = field(default_factory=list)


def run_nightly(
    engine: sa.Engine,
    day: dt.date,
    model: AgeModel,
    detector,
    config: NightConfig,
    *,
    run_id: str,
    job: str = "nightly",
    on_batch: Callable[[int], None] | None = None,
    source: sa.Engine | None = None,
) -> RunSummary:
    """Score one day and replace that day's outputs; returns what happened, for the log.

    The day's photos and purchases are read from `source` (the till, read-only; default:
    `engine`); the run's records go to `engine`, the job's own database."""
    started = time.monotonic()
    source = source or engine
    with recorded_run(engine, run_id, job, day, model.version, holder=config.holder):
        photos = with_retries(lambda: queries.photos_for_day(source, day))
        stats = ScoringStats()
        scores = estimate_ages(photos, model, detector, config, on_batch, stats)
        summary = write_scored_day(engine, day, photos, scores, config,
                                   model_version=model.version, card=model.card, run_id=run_id,
                                   started=started, source=source)
        summary.scoring = stats
        return summary


def write_day(
    engine: sa.Engine,
    day: dt.date,
    photos: pd.DataFrame,
    scores: pd.DataFrame,
    config: NightConfig,
    *,
    model_version: str,
    card: Mapping[str, object],
    job: str,
    run_id: str,
    started: float,
    source: sa.Engine | None = None,
) -> RunSummary:
    """A day scored elsewhere (Ray's actors) written as `run_nightly` writes it, under its
    own `runs` row: the one day writer every engine ends in."""
    with recorded_run(engine, run_id, job, day, model_version, holder=config.holder):
        return write_scored_day(engine, day, photos, scores, config,
                                model_version=model_version, card=card, run_id=run_id,
                                started=started, source=source)


@contextlib.contextmanager
def recorded_run(
    engine: sa.Engine, run_id: str, job: str, day: dt.date, model_version: str,
    holder: str = "",
) -> Iterator[None]:
    """A `runs` row for the block: 'running' now, 'failed' if the block raises (the block
    itself records 'ok'), so a crash or a kill still leaves a row to find."""
    with_retries(lambda: queries.start_run(engine, run_id, job, day, model_version, holder))
    try:
        yield
    except BaseException as exc:
        _record_failure(engine, run_id, exc)
        raise


def write_scored_day(
    engine: sa.Engine,
    day: dt.date,
    photos: pd.DataFrame,
    scores: pd.DataFrame,
    config: NightConfig,
    *,
    model_version: str,
    card: Mapping[str, object],
    run_id: str,
    started: float,
    source: sa.Engine | None = None,
) -> RunSummary:
    """The night after scoring, step by step: the day's photos and their scores (one row per
    photo, in the photos' order) become the receipts' age groups, meet the day's purchases,
    become the day's tables, written together; then quarantine, retention, marker and the
    run's 'ok'.

    Purchases are read from `source` (default: `engine`); records go to `engine`. Only the
    steps named `read_*`, `write_*` and `record_*` do I/O; the others are pure."""
    check_photos_found(scores, day, config.photo_root)
    # ages -> receipts' age groups (pure)
    estimates = receipt_estimates(photos, scores, config.bins)
    # age groups meet purchases: the database sums the day's lines per store, category, group
    aggregates = read_day_aggregates(source or engine, day, estimates, card, config)
    window = read_window(day, config)  # the earlier days the trailing windows add up
    # the day's tables, marketing and restricted (pure but for summing the window's files)
    tables = build_day_tables(day, estimates, aggregates, window, card, config,
                              photo_scores=photo_quality(photos, scores))
    meta = {"run_id": run_id, "day": day.isoformat(), **config.run_settings(model_version)}
    summary = RunSummary(run_id, day)
    # The marker goes just before the first rename, so it always describes the files
    # beside it; a write that fails earlier leaves both the old files and their marker.
    summary.outputs = write_day_tables(
        tables, day, config, meta, model_version,
        before_commit=lambda: remove_marker(config.output_root, day))
    summary.quarantine = record_quarantine(engine, run_id, day, photos, scores)
    purged = purge_compliance(config)
    _summarise(summary, photos, scores, tables, purged, started)
    record_day(engine, summary, config, meta)
    return summary


def photo_quality(photos: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per photo with its receipt and quality signals (camera_quality.PHOTO_COLUMNS)."""
    return photos[["photo_id", "receipt_id"]].merge(
        scores[[c for c in PHOTO_COLUMNS if c != "receipt_id"]], on="photo_id", how="left")


def record_quarantine(engine: sa.Engine, run_id: str, day: dt.date, photos: pd.DataFrame,
                      scores: pd.DataFrame) -> pd.DataFrame:
    """The day's quarantined photos replace its earlier quarantine records; returned for the
    log."""
    quarantine = scores.loc[scores["status"] == "quarantined"].merge(
        photos[["photo_id", "path"]], on="photo_id")[["photo_id", "path", "reason", "detail"]]
    with_retries(lambda: queries.replace_quarantine(engine, run_id, day, quarantine))
    return quarantine


def record_day(engine: sa.Engine, summary: RunSummary, config: NightConfig,
               meta: Mapping[str, str]) -> None:
    """The SUCCESS marker beside the day's files, then the run's 'ok' with its counts."""
    # The file metadata holds text only; the marker keeps numbers as numbers.
    numbers = {"min_cell": config.min_cell, "challenge_age": config.challenge_age,
               "window_days": config.window_days}
    write_marker(config.output_root, summary.day, {**meta, **numbers, **summary.counts,
                                                   "seconds": summary.seconds})
    with_retries(lambda: queries.finish_run(engine, summary.run_id, "ok", summary.counts))


def _summarise(summary: RunSummary, photos: pd.DataFrame, scores: pd.DataFrame,
               tables: DayTables, purged: Mapping[str, int], started: float) -> None:
    summary.counts = {**_counts(photos, scores), **tables.counts, **purged}
    summary.notes = list(tables.notes)
    summary.camera_alerts = camera_alerts(tables.restricted[CAMERA_QUALITY])
    summary.seconds = round(time.monotonic() - started, 2)


def day_is_current(config: NightConfig, day: dt.date, model_version: str) -> bool:
    """True when the day's SUCCESS marker says it was written by this model version with
    these settings: a rescore may skip it. The marker is written after every file of the
    day and removed before any is replaced, so it never vouches for a half-written day."""
    marker = read_marker(config.output_root, day)
    want = config.run_settings(model_version)
    return marker is not None and all(str(marker.get(k)) == v for k, v in want.items())


def estimate_ages(
    photos: pd.DataFrame, model: AgeModel, detector, config: NightConfig,
    on_batch: Callable[[int], None] | None = None, stats: ScoringStats | None = None,
) -> pd.DataFrame:
    """Stream the day's photos through the model; one small row per photo comes back.
    `stats`, when given, says afterwards how fast and where the time went."""
    rows = zip(photos["photo_id"].tolist(), photos["path"].tolist())
    frames = []
    for frame in score_photos(rows, config.photo_root, model, detector, config.batch_size,
                              challenge_age=config.challenge_age,
                              prep_workers=config.prep_workers, stats=stats):
        frames.append(frame)
        if on_batch:
            on_batch(len(frame))
    if not frames:
        return empty_scores()
    return pd.concat(frames, ignore_index=True)


def check_photos_found(scores: pd.DataFrame, day: dt.date, photo_root: Path) -> None:
    """Refuse a day on which no photo file could even be opened, before anything is written.

    One missing file is a bad photo and goes to quarantine; every file missing is an outage
    (a share mounted empty, a wrong --photo-root) and must not replace a good day's tables.
    """
    if scores.empty:
        return
    unopened = (scores["status"] == "quarantined") & scores["reason"].isin(UNOPENED_REASONS)
    if unopened.all() and (scores["reason"] == "missing").any():
        raise PhotosUnavailable(
            f"none of the {len(scores)} photos of {day} could be opened under {photo_root} "
            "(is the photo share mounted?); the day's outputs were left as they were")


def check_photo_files(photos: pd.DataFrame, day: dt.date, photo_root: Path,
                      sample: int = 200) -> None:
    """Before the model loads: refuse a day when none of up to `sample` of its photos,
    spread over the day, exists under `photo_root` (a wrong or empty photo share).

    Only looks the files up; `check_photos_found` still judges the whole day after scoring.
    """
    if photos.empty:
        return
    step = max(1, len(photos) // sample)
    reasons = []
    for rel in photos["path"].iloc[::step].head(sample):
        try:
            resolve_photo_path(photo_root, rel)
            return
        except PhotoError as exc:
            reasons.append(exc.reason)
    if "missing" in reasons and set(reasons) <= set(UNOPENED_REASONS):
        raise PhotosUnavailable(
            f"none of {len(reasons)} of the {len(photos)} photos of {day} checked exists under "
            f"{photo_root} (is the photo share mounted? is --photo-root right?); nothing was "
            "replaced")


ESTIMATE_COLUMNS = ["receipt_id", "photo_id", "age", "age_group", "p_under", "face_count",
                    "face_confidence", "face_px", *QUALITY_COLUMNS, "status"]


def receipt_estimates(photos: pd.DataFrame, scores: pd.DataFrame, bins: AgeBins) -> pd.DataFrame:
    """One estimate per receipt: the photo with a face wins; several such, the earliest photo.

    Columns: ESTIMATE_COLUMNS. `status` says how sure the estimate is (models.score.STATUSES);
    ages are rounded to 0.1 year and stored as float64, so 38.6 reads back as 38.6.
    `p_under` is the model's calibrated P(true age < the challenge age), rounded to 0.001.
    The face's quality signals (models/quality.py: sharpness, exposure mean and spread)
    are restricted like the ages: this table is written to the restricted root only.
    """
    scored = photos[["photo_id", "receipt_id"]].merge(
        scores[["photo_id", "age", "p_under", "face_count", "face_confidence", "face_px",
                *QUALITY_COLUMNS, "status"]],
        on="photo_id", how="left")
    scored = scored.dropna(subset=["receipt_id"])
    scored = scored.sort_values(["photo_id"]).assign(_no_age=lambda d: d["age"].isna())
    scored = scored.sort_values(["_no_age", "photo_id"], kind="stable")
    one = scored.drop_duplicates("receipt_id").drop(columns="_no_age")
    one = one.astype({"receipt_id": "int64"}).sort_values("receipt_id").reset_index(drop=True)
    one["age"] = one["age"].astype("float64").round(1)
    one["face_confidence"] = one["face_confidence"].astype("float64").round(3)
    one["p_under"] = one["p_under"].astype("float64").round(3)
    for column in QUALITY_COLUMNS:
        one[column] = one[column].astype("float64").round(1)
    one["age_group"] = assign_age_groups(one["age"], bins)
    return one[ESTIMATE_COLUMNS]


def _counts(photos: pd.DataFrame, scores: pd.DataFrame) -> dict[str, int]:
    status = scores["status"].value_counts()
    return {
        "photos": len(photos),
        "scored": int(sum(status.get(s, 0) for s in AGED)),
        **{s: int(status.get(s, 0)) for s in STATUSES},
    }


def _record_failure(engine: sa.Engine, run_id: str, exc: BaseException) -> None:
    """Best effort: the run row says it failed; never mask the original error."""
    with contextlib.suppress(Exception):  # the database may be what failed
        queries.finish_run(engine, run_id, "failed", {"error": type(exc).__name__})
