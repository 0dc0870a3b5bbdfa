"""The nightly pipeline, read top to bottom: photos → ages → age groups → purchases → Parquet.

Everything is computed before anything is written, so a failure while reading the
database or scoring leaves the previous outputs for the day untouched; each output file is
then replaced atomically (see analytics/parquet.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.parquet import write_marker, write_partition
from analytics.purchases import join_purchases
from analytics.summaries import sales_by_age_group
from models.persist import AgeModel
from models.score import score_photos
from sql import queries
from sql.engine import with_retries

MARKETING_TABLE = "sales_by_age_group"
RESTRICTED_TABLE = "age_estimates"


@dataclass(frozen=True)
class NightlyConfig:
    """Plain arguments for one run; the CLI builds this from its Settings."""

    photo_root: Path
    output_root: Path
    restricted_root: Path
    bins: AgeBins
    min_cell: int = 10
    batch_size: int = 32


@dataclass
class RunSummary:
    run_id: str
    day: dt.date
    counts: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    quarantine: pd.DataFrame = field(default_factory=pd.DataFrame)
    age_mix: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0


def run_nightly(
    engine: sa.Engine,
    day: dt.date,
    model: AgeModel,
    detector,
    config: NightlyConfig,
    *,
    run_id: str,
    job: str = "nightly",
    on_batch: Callable[[int], None] | None = None,
) -> RunSummary:
    """Score one day and replace that day's outputs; returns what happened, for the log."""
    started = time.monotonic()
    with_retries(lambda: queries.start_run(engine, run_id, job, day, model.version))
    try:
        photos = with_retries(lambda: queries.photos_for_day(engine, day))
        scores = estimate_ages(photos, model, detector, config, on_batch)
        estimates = receipt_estimates(photos, scores, config.bins)
        lines = with_retries(lambda: queries.purchase_lines_for_day(engine, day))
        joined = join_purchases(lines, estimates)
        sales = sales_by_age_group(joined, config.min_cell)

        meta = {"run_id": run_id, "day": day.isoformat(), "model_version": model.version,
                "age_bins": config.bins.to_spec(), "min_cell": str(config.min_cell)}
        summary = RunSummary(run_id, day)
        summary.outputs[RESTRICTED_TABLE] = write_partition(
            config.restricted_root, RESTRICTED_TABLE, day,
            estimates.assign(model_version=model.version), meta)
        summary.outputs[MARKETING_TABLE] = write_partition(
            config.output_root, MARKETING_TABLE, day,
            sales.assign(model_version=model.version), meta)
        quarantine = scores.loc[scores["status"] == "quarantined"].merge(
            photos[["photo_id", "path"]], on="photo_id")[["photo_id", "path", "reason", "detail"]]
        with_retries(lambda: queries.replace_quarantine(engine, run_id, day, quarantine))

        summary.counts = _counts(photos, scores, estimates, lines, sales)
        summary.quarantine = quarantine
        summary.age_mix = estimates.groupby("age_group", observed=False).size().rename(
            "receipts").reset_index()
        summary.seconds = round(time.monotonic() - started, 2)
        write_marker(config.output_root, day, {**meta, **summary.counts,
                                               "seconds": summary.seconds})
        with_retries(lambda: queries.finish_run(engine, run_id, "ok", summary.counts))
        return summary
    except BaseException as exc:
        _record_failure(engine, run_id, exc)
        raise


def estimate_ages(
    photos: pd.DataFrame, model: AgeModel, detector, config: NightlyConfig,
    on_batch: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Stream the day's photos through the model; one small row per photo comes back."""
    rows = zip(photos["photo_id"].tolist(), photos["path"].tolist())
    frames = []
    for frame in score_photos(rows, config.photo_root, model, detector, config.batch_size):
        frames.append(frame)
        if on_batch:
            on_batch(len(frame))
    if not frames:
        return pd.DataFrame({"photo_id": pd.Series(dtype="int64"),
                             "age": pd.Series(dtype="float32"),
                             "face_count": pd.Series(dtype="int16"),
                             "status": pd.Series(dtype=str), "reason": pd.Series(dtype=str),
                             "detail": pd.Series(dtype=str)})
    return pd.concat(frames, ignore_index=True)


def receipt_estimates(photos: pd.DataFrame, scores: pd.DataFrame, bins: AgeBins) -> pd.DataFrame:
    """One estimate per receipt: the photo with a face wins; several such, the earliest photo.

    Columns: receipt_id, photo_id, age, age_group, face_count.
    """
    scored = photos[["photo_id", "receipt_id"]].merge(
        scores[["photo_id", "age", "face_count"]], on="photo_id", how="left")
    scored = scored.dropna(subset=["receipt_id"])
    scored = scored.sort_values(["photo_id"]).assign(_no_age=lambda d: d["age"].isna())
    scored = scored.sort_values(["_no_age", "photo_id"], kind="stable")
    one = scored.drop_duplicates("receipt_id").drop(columns="_no_age")
    one = one.astype({"receipt_id": "int64"}).sort_values("receipt_id").reset_index(drop=True)
    one["age"] = one["age"].round(1)
    one["age_group"] = assign_age_groups(one["age"], bins)
    return one[["receipt_id", "photo_id", "age", "age_group", "face_count"]]


def _counts(photos, scores, estimates, lines, sales) -> dict[str, int]:
    status = scores["status"].value_counts()
    return {
        "photos": len(photos),
        "scored": int(status.get("ok", 0)),
        "no_face": int(status.get("no_face", 0)),
        "quarantined": int(status.get("quarantined", 0)),
        "receipts": int(lines["receipt_id"].nunique()) if len(lines) else 0,
        "receipts_with_age": int(estimates["age"].notna().sum()),
        "lines": len(lines),
        "cells": len(sales),
        "suppressed_cells": int(sales["suppressed"].sum()) if len(sales) else 0,
    }


def _record_failure(engine: sa.Engine, run_id: str, exc: BaseException) -> None:
    """Best effort: the run row says it failed; never mask the original error."""
    with contextlib.suppress(Exception):  # the database may be what failed
        queries.finish_run(engine, run_id, "failed", {"error": type(exc).__name__})
