"""Every table one night produces: computed from the day's estimates, then written together.

Two reading steps at the edges, `read_day_aggregates` (the database joins the day's
purchases with the receipts' age groups) and `read_window` (earlier days' partitions for
the trailing windows); then `build_day_tables` computes, writing nothing, so a failure
leaves the day's previous outputs untouched. `write_day_tables` then replaces all of the
day's partitions at once, and `purge_compliance` applies the retention period. The
marketing root gets aggregates only; everything per receipt or per cashier, and the
unsuppressed daily counts, go to the restricted root.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from analytics.age_groups import UNKNOWN
from analytics.camera_quality import camera_quality
from analytics.compliance import (
    ErrorBands,
    compliance_rows,
    compliance_sales,
    flag_marks,
    summarise_marks,
)
from analytics.config import NightConfig
from analytics.day_aggregates import DayAggregates, aggregate_day
from analytics.estimates import CONFUSION, EstimateOptions
from analytics.group_estimates import (
    attach,
    bins_of,
    day_estimates,
    group_labels,
    hard_cells,
    note,
    with_year_labels,
    year_rows,
)
from analytics.parquet import (
    PartitionUnreadable,
    delete_partitions_before,
    iter_partitions,
    partition_files,
    write_partitions,
)
from analytics.recommendations import affinity_counts, window_recommendations
from analytics.summaries import age_mix_table, category_cells, sales_from_cells
from sql.engine import with_retries

# Marketing root (aggregates, small cells suppressed).
SALES = "sales_by_age_group"
RECOMMENDATIONS = "recommendations"
AGE_MIX = "age_mix"  # the corrected age-group mix of each store's receipts, and the chain's
# Restricted root.
ESTIMATES = "age_estimates"
AFFINITY = "affinity_counts"
AGE_HISTOGRAMS = "age_histograms"  # receipts per store x category x estimated year
COMPLIANCE = "compliance"
COMPLIANCE_SALES = "compliance_sales"
COMPLIANCE_SUMMARY = "compliance_summary"
CAMERA_QUALITY = "camera_quality"
COMPLIANCE_TABLES = (COMPLIANCE, COMPLIANCE_SALES, COMPLIANCE_SUMMARY)


@dataclass
class DayTables:
    """The day's tables by name, per root, with a few counts for the run record."""

    marketing: dict[str, pd.DataFrame] = field(default_factory=dict)
    restricted: dict[str, pd.DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the log (what was estimated how)


@dataclass(frozen=True)
class Window:
    """The earlier days of the trailing window as found on disk, before the night computes.

    Files, not frames, where a month is large: DuckDB sums them where they lie (a busy month
    holds millions of flagged rows). The compliance lists stay empty for a day already past
    retention, whose compliance tables are not written."""

    start: dt.date
    affinity: list[Path] = field(default_factory=list)
    compliance: list[Path] = field(default_factory=list)
    compliance_sales: list[pd.DataFrame] = field(default_factory=list)  # a row per store-day


def read_window(day: dt.date, config: NightConfig) -> Window:
    """What `build_day_tables` needs of the days before `day` (I/O: the restricted root)."""
    start = day - dt.timedelta(days=config.window_days - 1)
    yesterday = day - dt.timedelta(days=1)
    root = config.restricted_root
    window = Window(start, [path for _, path in partition_files(root, AFFINITY, start,
                                                                yesterday)])
    if day < config.retention_cutoff():
        return window
    window.compliance.extend(path for _, path in partition_files(root, COMPLIANCE, start,
                                                                 yesterday))
    with _reading_window():
        window.compliance_sales.extend(
            frame for _, frame in iter_partitions(root, COMPLIANCE_SALES, start, yesterday))
    return window


def read_day_aggregates(
    engine: sa.Engine, day: dt.date, estimates: pd.DataFrame, card: Mapping[str, object],
    config: NightConfig,
) -> DayAggregates:
    """Where the age groups meet the purchases: the database sums `day`'s lines per store,
    category and group (analytics/day_aggregates.py), and per estimated year where the
    corrected estimates need it. I/O: the till's database, read only."""
    joined = [c for c in ("receipt_id", "age_group", "age", "p_under") if c in estimates]
    by_year = _estimate_bins(estimates, config) is not None
    counted = with_year_labels(estimates[joined]) if by_year else estimates[joined]
    return with_retries(lambda: aggregate_day(
        engine, day, counted, challenge_age=config.challenge_age,
        flag_probability=config.flag_rule(card), unknown=UNKNOWN))


def build_day_tables(
    day: dt.date,
    estimates: pd.DataFrame,
    aggregates: DayAggregates,
    window: Window,
    card: Mapping[str, object],
    config: NightConfig,
    photo_scores: pd.DataFrame | None = None,
) -> DayTables:
    """All of `day`'s tables from its estimates (receipt_id, photo_id, age, age_group,
    face_count), the database's aggregates of its purchases, the earlier days of the window
    and the model card (the confusion for the corrected estimates, the compliance error
    bands). Writes nothing, reads nothing but the window's files.

    With `photo_scores` (one row per photo: analytics/camera_quality.PHOTO_COLUMNS), the
    restricted `camera_quality` table too."""
    flag_probability = config.flag_rule(card)
    groups = group_labels(estimates) if "age_group" in estimates else []
    bins = _estimate_bins(estimates, config)
    cells = aggregates.cells
    tables = DayTables()
    est = None
    if bins is not None:
        rows = year_rows(cells)
        cells = hard_cells(cells, groups)
        est = day_estimates(rows, card, bins, EstimateOptions())
        tables.restricted[AGE_HISTOGRAMS] = rows
        tables.notes.append(note(est.kind))
    tables.marketing[SALES] = sales_from_cells(attach(category_cells(cells), est),
                                               config.min_cell)
    if est is not None:
        tables.marketing[AGE_MIX] = age_mix_table(cells, est.frame, config.min_cell)
    # Recommendations rank on corrected lifts only where the model's confusion corrected
    # them; the fallback's assumed error is good for the mix, not for reordering lists.
    corrected = est is not None and est.kind == CONFUSION
    affinity = affinity_counts(cells, est.frame if corrected else None)
    tables.restricted[ESTIMATES] = estimates
    tables.restricted[AFFINITY] = affinity
    stores = dict(cells[["store_id", "store_name"]].drop_duplicates("store_id").itertuples(
        index=False))
    if photo_scores is not None:
        tables.restricted[CAMERA_QUALITY] = camera_quality(
            photo_scores, aggregates.receipt_stores, stores)

    with _reading_window():
        tables.marketing[RECOMMENDATIONS] = window_recommendations(
            [*window.affinity, affinity], window_start=window.start, window_end=day,
            window_days=len(window.affinity) + 1, min_cell=config.min_cell)

    tables.counts = {
        "receipts": int(cells["group_receipts"].sum()),
        "receipts_with_age": int(estimates["age"].notna().sum()),
        "lines": int(cells["lines"].sum()),
        "cells": len(tables.marketing[SALES]),
        "suppressed_cells": int(tables.marketing[SALES]["suppressed"].sum()),
        "estimated_with_confusion": int(est is not None and est.kind == CONFUSION),
        "recommendations": len(tables.marketing[RECOMMENDATIONS]),
        "alcohol_sales": int(aggregates.restricted_sales["alcohol_sales"].sum()),
        "flagged": len(aggregates.flagged),
        "flagged_low_quality": _low_quality(aggregates.flagged, estimates),
    }
    if day < config.retention_cutoff():
        tables.counts["compliance_skipped"] = 1  # the day is already past retention
        return tables
    flagged = compliance_rows(_with_status(aggregates.flagged, estimates), stores,
                              ErrorBands.from_card(card), config.challenge_age,
                              flag_probability)
    sales = compliance_sales(aggregates.restricted_sales, stores)
    tables.restricted[COMPLIANCE] = flagged
    tables.restricted[COMPLIANCE_SALES] = sales
    with _reading_window():
        marks = flag_marks([*window.compliance, flagged])
    window_sales = pd.concat([*window.compliance_sales, sales], ignore_index=True)
    tables.restricted[COMPLIANCE_SUMMARY] = summarise_marks(
        marks, window_sales, window_start=window.start, window_end=day,
        window_days=len(window.compliance) + 1, challenge_age=config.challenge_age)
    return tables


def _estimate_bins(estimates: pd.DataFrame, config: NightConfig):
    """The age bins of the corrected estimates, or None where there are none to make."""
    if not config.corrected_estimates or "age" not in estimates:
        return None
    return bins_of(group_labels(estimates) if "age_group" in estimates else [])


def write_day_tables(
    tables: DayTables, day: dt.date, config: NightConfig, metadata: Mapping[str, str],
    model_version: str,
    *,
    before_commit: Callable[[], object] | None = None,
) -> dict[str, Path]:
    """Replace the day's partition of every table, restricted and marketing, all or none.

    Each table gets a model_version column and `metadata` in its file.
    """
    parts = [(root, name, frame.assign(model_version=model_version))
             for root, frames in ((config.restricted_root, tables.restricted),
                                  (config.output_root, tables.marketing))
             for name, frame in frames.items()]
    paths = write_partitions(parts, day, metadata, before_commit=before_commit)
    return {name: path for (_, name, _), path in zip(parts, paths, strict=True)}


def purge_compliance(config: NightConfig) -> dict[str, int]:
    """Delete compliance partitions older than the retention period; say how many went."""
    cutoff = config.retention_cutoff()
    partitions = rows = 0
    for table in COMPLIANCE_TABLES:
        gone, count = delete_partitions_before(config.restricted_root, table, cutoff)
        partitions += gone
        rows += count if table == COMPLIANCE else 0
    return {"compliance_partitions_deleted": partitions, "compliance_rows_deleted": rows}


def _with_status(flagged: pd.DataFrame, estimates: pd.DataFrame) -> pd.DataFrame:
    """The flagged sales with their estimate's status (models/score.py: a "low_quality"
    photo's age is less sure than the model's figures say)."""
    if "status" not in estimates:
        return flagged
    status = estimates.drop_duplicates("receipt_id").set_index("receipt_id")["status"]
    return flagged.assign(estimate_status=flagged["receipt_id"].map(status))


def _low_quality(flagged: pd.DataFrame, estimates: pd.DataFrame) -> int:
    """How many of the day's flagged sales rest on a low-quality photo."""
    with_status = _with_status(flagged, estimates)
    if "estimate_status" not in with_status:
        return 0
    return int((with_status["estimate_status"] == "low_quality").sum())


@contextlib.contextmanager
def _reading_window() -> Iterator[None]:
    """Earlier days' partitions are files on a share: one cut short or replaced by something
    else stops the night with a one-line reason naming it, not a reader's traceback. Nothing
    is written before this, so the day's previous outputs stay as they were."""
    try:
        yield
    except (duckdb.IOException, duckdb.InvalidInputException, pa.ArrowException,
            OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PartitionUnreadable(
            f"an earlier day of the trailing window cannot be read ({detail}); rerun that day "
            "to rewrite it, or move the partition away, then run this day again") from exc
