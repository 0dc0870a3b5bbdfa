"""The night's corrected group estimates: where `analytics.estimates` meets the day's cells.

The estimator needs, per (store, category), how many receipts came with each estimated age
in whole years; the marketing tables need the same counts per estimated age *group*. One pass
over the day's lines gives both: each receipt is counted under a "group|year" label (its
hard group and its estimated year), and the product cells are then rolled up to hard groups
exactly as before (`hard_cells`), while the (store, category, year) histograms feed the EM
(`year_rows`, `day_estimates`). Nothing here reads the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analytics.age_groups import UNKNOWN, AgeBins, AgeBinsError
from analytics.estimates import (
    CONFUSION,
    MAX_AGE,
    UNKNOWN_YEAR,
    EstimateOptions,
    error_model,
    estimate,
    estimate_frame,
    histograms,
)
from analytics.recommendations import age_order

SEPARATOR = "|"
EST_COLUMNS = ["est_receipts", "est_receipts_low", "est_receipts_high", "est_revenue"]
CHAIN_STORE_ID = -1  # the chain-wide unit of the estimates (never a store of the till)
YEAR_ROW_DTYPES = {"store_id": "int64", "store_name": "str", "category": "str",
                   "year": "int64", "receipts": "int64", "revenue": "float64"}


@dataclass
class DayEstimates:
    """Corrected estimates per (store, category, group); category null: the store's
    receipts as a whole (its age mix). `kind` says what the correction used."""

    frame: pd.DataFrame
    kind: str


def group_labels(estimates: pd.DataFrame, unknown: str = UNKNOWN) -> list[str]:
    """The hard groups in the order `aggregate_day` gives them, "unknown" last."""
    groups = estimates["age_group"]
    if isinstance(groups.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in groups.cat.categories]
    else:
        labels = sorted(str(g) for g in groups.dropna().unique())
    return labels if unknown in labels else [*labels, unknown]


def bins_of(labels: list[str], unknown: str = UNKNOWN) -> AgeBins | None:
    """The age bins the labels spell ("0-17", ..., "65+"), or None when they spell none."""
    named = sorted((label for label in labels if label != unknown), key=age_order)
    try:
        bins = AgeBins.parse(",".join(named))
    except AgeBinsError:
        return None
    return bins if bins.labels[:-1] == named else None


def with_year_labels(estimates: pd.DataFrame, unknown: str = UNKNOWN) -> pd.DataFrame:
    """The estimates with `age_group` replaced by "group|year" (estimated whole year, clipped
    to 0..MAX_AGE; "group|-1" without an age); unknown groups stay `unknown`."""
    group = estimates["age_group"].astype(object)
    age = pd.to_numeric(estimates["age"], errors="coerce").to_numpy(np.float64)
    year = np.where(np.isfinite(age), np.clip(np.floor(np.nan_to_num(age)), 0, MAX_AGE),
                    UNKNOWN_YEAR).astype(np.int64)
    known = group.notna() & (group.astype(str) != unknown)
    label = np.where(known, group.astype(str) + SEPARATOR + year.astype(str), unknown)
    return estimates.assign(age_group=pd.Series(label, index=estimates.index, dtype=object))


def hard_cells(year_cells: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Product cells counted under "group|year" labels, summed back to the hard groups:
    the same cells (same columns, types and sums) counting under the groups gives."""
    label = year_cells["age_group"].astype(str)
    hard = label.str.split(SEPARATOR, n=1).str[0]
    keys = ["store_id", "store_name", "age_group", "category", "product_id", "product_name",
            "age_restricted"]
    frame = year_cells.assign(age_group=pd.Categorical(hard, categories=groups))
    sums = ["receipts", "category_receipts", "group_receipts", "lines", "items", "revenue"]
    out = (frame.groupby(keys, observed=True, sort=True)[sums].sum().reset_index())
    for column in sums[:-1]:
        out[column] = out[column].astype(np.int64)
    return out[list(year_cells.columns)]


def year_rows(year_cells: pd.DataFrame, unknown: str = UNKNOWN) -> pd.DataFrame:
    """(store, category, estimated year) receipts and revenue, plus one row per (store, year)
    with category null for all of the store's receipts: the estimator's histograms, and the
    restricted daily table the trailing window sums."""
    label = year_cells["age_group"].astype(str)
    year = label.str.split(SEPARATOR, n=1).str[1].fillna(str(UNKNOWN_YEAR)).astype(np.int64)
    frame = year_cells.assign(year=year.where(label != unknown, UNKNOWN_YEAR))
    keys = ["store_id", "store_name", "year"]
    by_category = (frame.groupby([*keys, "category"], observed=True, sort=True)
                   .agg(receipts=("category_receipts", "sum"), revenue=("revenue", "sum"))
                   .reset_index())
    by_store = (frame.groupby(keys, observed=True, sort=True)
                .agg(receipts=("group_receipts", "sum"), revenue=("revenue", "sum"))
                .reset_index().assign(category=None))
    out = pd.concat([by_store, by_category.astype({"category": object})], ignore_index=True)
    out = out.astype({"store_name": object})
    return out[list(YEAR_ROW_DTYPES)].astype({"store_id": "int64", "year": "int64",
                                               "receipts": "int64", "revenue": "float64"})


def with_chain(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows summed over stores as store CHAIN_STORE_ID, "all stores"."""
    chain = (rows.assign(category=rows["category"].fillna(""))
             .groupby(["category", "year"], sort=True)[["receipts", "revenue"]].sum()
             .reset_index())
    chain["category"] = chain["category"].where(chain["category"] != "", None)
    return chain.assign(store_id=CHAIN_STORE_ID, store_name="all stores")[list(rows.columns)]


def day_estimates(rows: pd.DataFrame, card: Mapping[str, Any], bins: AgeBins,
                  options: EstimateOptions | None = None) -> DayEstimates:
    """Corrected receipts, intervals and revenue per (store, category or all, group), and
    the same chain-wide under store_id CHAIN_STORE_ID. "unknown" keeps its observed counts."""
    options = options or EstimateOptions()
    model = error_model(card, bins.lowers)
    labels = bins.labels[:-1]
    frames = []
    for part in (rows, with_chain(rows)):  # stores lean on each other; the chain on itself
        if part.empty:
            continue
        h = histograms(part)
        frames.append(estimate_frame(estimate(h, model, options), labels))
        unknown = h.units.assign(age_group=bins.labels[-1], est_receipts=h.unknown,
                                 est_receipts_low=h.unknown, est_receipts_high=h.unknown,
                                 est_revenue=h.unknown_revenue)
        frames.append(unknown[unknown["est_receipts"] > 0])
    if not frames:
        empty = pd.DataFrame(columns=["store_id", "store_name", "category", "age_group",
                                      *EST_COLUMNS])
        return DayEstimates(empty, model.kind)
    frame = pd.concat(frames, ignore_index=True)
    return DayEstimates(frame, model.kind)


def attach(cells: pd.DataFrame, est: DayEstimates | None) -> pd.DataFrame:
    """Category cells (store_id, age_group, category, ...) with the estimates' columns; a
    cell the estimates do not cover gets nulls."""
    if est is None or est.frame.empty:
        return cells.assign(**{c: np.nan for c in EST_COLUMNS})
    per_cell = est.frame.loc[est.frame["category"].notna()]
    keys = ["store_id", "age_group", "category"]
    right = per_cell[[*keys, *EST_COLUMNS]].astype({"age_group": object, "category": object})
    left = cells.astype({"age_group": object, "category": object})
    merged = left.merge(right, on=keys, how="left")
    for column in ("age_group", "category"):
        if isinstance(cells[column].dtype, pd.CategoricalDtype):
            merged[column] = pd.Categorical(merged[column],
                                            categories=cells[column].cat.categories)
    return merged


def note(kind: str) -> str:
    """One line for the log and the files: what the estimates were corrected with."""
    if kind == CONFUSION:
        return "estimates: corrected with the model card's confusion"
    return f"estimates: {kind} (run `ageseg confusion MODEL --faces DIR` to measure it)"
