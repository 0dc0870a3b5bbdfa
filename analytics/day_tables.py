"""Every table one night produces: computed from the day's estimates, then written together.

`build_day_tables` reads (the database's aggregates, earlier days' partitions for the
trailing windows) and computes; it writes nothing, so a failure leaves the day's previous
outputs untouched. `write_day_tables` then replaces all of the day's partitions at once, and
`purge_compliance` applies the retention period. The marketing root gets aggregates only;
everything per receipt or per cashier, and the unsuppressed daily counts, go to the
restricted root.
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
from analytics.day_aggregates import aggregate_day
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


@dataclass(frozen=True)
class DayOptions:
    """What shapes the day's tables (the CLI's --min-cell, --challenge-age, ...)."""

    output_root: Path
    restricted_root: Path
    min_cell: int = 10
    challenge_age: float = 25.0
    window_days: int = 28
    compliance_retention_days: int = 90
    today: dt.date | None = None  # retention counts back from here; None: the clock's today
    flag_probability: float | None = None  # None: the model card's operating point
    estimate: EstimateOptions | None = EstimateOptions()  # None: no corrected estimates

    def flag_rule(self, card: Mapping[str, object]) -> float | None:
        """The P(under the challenge age) at which a sale is flagged: the operator's
        --flag-probability, else the operating point on the model's card, else None (flag by
        the estimated age alone, for models without a calibrated distribution)."""
        if self.flag_probability is not None:
            return self.flag_probability
        calibration = card.get("calibration")
        if isinstance(calibration, Mapping) and calibration.get("flag_probability") is not None:
            return float(calibration["flag_probability"])
        return None

    def retention_cutoff(self) -> dt.date:
        """Compliance partitions for days before this are deleted (and not written)."""
        today = self.today or dt.date.today()
        return today - dt.timedelta(days=self.compliance_retention_days)


@dataclass
class DayTables:
    """The day's tables by name, per root, with a few counts for the run record."""

    marketing: dict[str, pd.DataFrame] = field(default_factory=dict)
    restricted: dict[str, pd.DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # lines for the log (what was estimated how)


def build_day_tables(
    engine: sa.Engine,
    day: dt.date,
    estimates: pd.DataFrame,
    card: Mapping[str, object],
    options: DayOptions,
    photo_scores: pd.DataFrame | None = None,
) -> DayTables:
    """All of `day`'s tables from its estimates (receipt_id, photo_id, age, age_group,
    face_count) and the model card (for the compliance error bands). Writes nothing.

    With `photo_scores` (one row per photo: analytics/camera_quality.PHOTO_COLUMNS), the
    restricted `camera_quality` table too."""
    flag_probability = options.flag_rule(card)
    joined = [c for c in ("receipt_id", "age_group", "age", "p_under") if c in estimates]
    groups = group_labels(estimates) if "age_group" in estimates else []
    bins = bins_of(groups) if options.estimate is not None and "age" in estimates else None
    # One pass over the lines, counted per "group|estimated year": the hard cells and the
    # estimator's histograms both come from it (analytics/group_estimates.py).
    counted = with_year_labels(estimates[joined]) if bins is not None else estimates[joined]
    aggregates = with_retries(lambda: aggregate_day(
        engine, day, counted,
        challenge_age=options.challenge_age, flag_probability=flag_probability,
        unknown=UNKNOWN))
    cells = aggregates.cells
    tables = DayTables()
    est = None
    if bins is not None:
        rows = year_rows(cells)
        cells = hard_cells(cells, groups)
        est = day_estimates(rows, card, bins, options.estimate)
        tables.restricted[AGE_HISTOGRAMS] = rows
        tables.notes.append(note(est.kind))
    tables.marketing[SALES] = sales_from_cells(attach(category_cells(cells), est),
                                               options.min_cell)
    if est is not None:
        tables.marketing[AGE_MIX] = age_mix_table(cells, est.frame, options.min_cell)
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

    start = day - dt.timedelta(days=options.window_days - 1)
    yesterday = day - dt.timedelta(days=1)
    earlier = partition_files(options.restricted_root, AFFINITY, start, yesterday)
    with _reading_window():
        tables.marketing[RECOMMENDATIONS] = window_recommendations(
            [*(path for _, path in earlier), affinity], window_start=start, window_end=day,
            window_days=len(earlier) + 1, min_cell=options.min_cell)

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
    if day < options.retention_cutoff():
        tables.counts["compliance_skipped"] = 1  # the day is already past retention
        return tables
    flagged = compliance_rows(_with_status(aggregates.flagged, estimates), stores,
                              ErrorBands.from_card(card), options.challenge_age,
                              flag_probability)
    sales = compliance_sales(aggregates.restricted_sales, stores)
    tables.restricted[COMPLIANCE] = flagged
    tables.restricted[COMPLIANCE_SALES] = sales
    # A busy month holds millions of flagged rows: DuckDB sums them from the files.
    earlier_flagged = partition_files(options.restricted_root, COMPLIANCE, start, yesterday)
    with _reading_window():
        marks = flag_marks([*(path for _, path in earlier_flagged), flagged])
        window_sales = pd.concat(list(_window(options.restricted_root, COMPLIANCE_SALES, start,
                                              day, sales)), ignore_index=True)
    tables.restricted[COMPLIANCE_SUMMARY] = summarise_marks(
        marks, window_sales, window_start=start, window_end=day,
        window_days=len(earlier_flagged) + 1, challenge_age=options.challenge_age)
    return tables


def write_day_tables(
    tables: DayTables, day: dt.date, options: DayOptions, metadata: Mapping[str, str],
    model_version: str,
    *,
    before_commit: Callable[[], object] | None = None,
) -> dict[str, Path]:
    """Replace the day's partition of every table, restricted and marketing, all or none.

    Each table gets a model_version column and `metadata` in its file.
    """
    parts = [(root, name, frame.assign(model_version=model_version))
             for root, frames in ((options.restricted_root, tables.restricted),
                                  (options.output_root, tables.marketing))
             for name, frame in frames.items()]
    paths = write_partitions(parts, day, metadata, before_commit=before_commit)
    return {name: path for (_, name, _), path in zip(parts, paths, strict=True)}


def purge_compliance(options: DayOptions) -> dict[str, int]:
    """Delete compliance partitions older than the retention period; say how many went."""
    cutoff = options.retention_cutoff()
    partitions = rows = 0
    for table in COMPLIANCE_TABLES:
        gone, count = delete_partitions_before(options.restricted_root, table, cutoff)
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


def _window(
    root: Path, table: str, start: dt.date, day: dt.date, today: pd.DataFrame,
) -> Iterator[pd.DataFrame]:
    """Earlier days' partitions in [start, day) from disk, then `today` (not yet written)."""
    for _, frame in iter_partitions(root, table, start, day - dt.timedelta(days=1)):
        yield frame
    yield today
