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


def _label_parts(labels: pd.Series, unknown: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per row of "group|year" labels: the hard group's code into the returned names, and
    the year (UNKNOWN_YEAR for none). Parsed once per distinct label, not per row."""
    cat = labels.astype("category") if not isinstance(labels.dtype, pd.CategoricalDtype) \
        else labels
    names = [str(c) for c in cat.cat.categories]
    hard = [n.split(SEPARATOR, 1)[0] for n in names]
    years = [int(n.split(SEPARATOR, 1)[1]) if SEPARATOR in n and n != unknown
             else UNKNOWN_YEAR for n in names]
    groups = sorted(set(hard))
    index = {g: i for i, g in enumerate(groups)}
    codes = cat.cat.codes.to_numpy()
    return (np.array([index[h] for h in hard], np.int64)[codes],
            np.array(years, np.int64)[codes], groups)


def hard_cells(year_cells: pd.DataFrame, groups: list[str], unknown: str = UNKNOWN
               ) -> pd.DataFrame:
    """Product cells counted under "group|year" labels, summed back to the hard groups:
    the same cells (same columns, types and sums) counting under the groups gives."""
    code, _, names = _label_parts(year_cells["age_group"], unknown)
    frame = year_cells.assign(_g=code)
    sums = ["receipts", "category_receipts", "group_receipts", "lines", "items", "revenue"]
    keys = ["store_id", "_g", "product_id"]
    grouped = frame.groupby(keys, sort=True)
    out = grouped[sums].sum()
    first = grouped[["store_name", "category", "product_name", "age_restricted"]].first()
    out = out.join(first).reset_index()
    out["age_group"] = pd.Categorical(np.asarray(names, dtype=object)[out["_g"].to_numpy()],
                                      categories=groups)
    for column in sums[:-1]:
        out[column] = out[column].astype(np.int64)
    for column in ("store_name", "category", "product_name"):
        if isinstance(year_cells[column].dtype, pd.CategoricalDtype):
            out[column] = pd.Categorical(out[column],
                                         categories=year_cells[column].cat.categories)
    return out[list(year_cells.columns)]


def year_rows(year_cells: pd.DataFrame, unknown: str = UNKNOWN) -> pd.DataFrame:
    """(store, category, estimated year) receipts and revenue, plus one row per (store, year)
    with category null for all of the store's receipts: the estimator's histograms, and the
    restricted daily table the trailing window sums."""
    _, year, _ = _label_parts(year_cells["age_group"], unknown)
    category = year_cells["category"]
    cat_codes = (category.cat.codes.to_numpy() if isinstance(category.dtype,
                                                               pd.CategoricalDtype)
                 else pd.factorize(category, sort=True)[0])
    cat_names = (np.asarray(category.cat.categories, dtype=object)
                 if isinstance(category.dtype, pd.CategoricalDtype)
                 else np.asarray(pd.factorize(category, sort=True)[1], dtype=object))
    frame = pd.DataFrame({"store_id": year_cells["store_id"].to_numpy(), "year": year,
                          "_c": cat_codes,
                          "category_receipts": year_cells["category_receipts"].to_numpy(),
                          "group_receipts": year_cells["group_receipts"].to_numpy(),
                          "revenue": year_cells["revenue"].to_numpy()})
    by_category = (frame.groupby(["store_id", "year", "_c"], sort=True)
                   .agg(receipts=("category_receipts", "sum"), revenue=("revenue", "sum"))
                   .reset_index())
    by_category["category"] = cat_names[by_category["_c"].to_numpy()]
    by_store = (frame.groupby(["store_id", "year"], sort=True)
                .agg(receipts=("group_receipts", "sum"), revenue=("revenue", "sum"))
                .reset_index().assign(category=None))
    out = pd.concat([by_store, by_category.drop(columns="_c")], ignore_index=True)
    names = (year_cells[["store_id", "store_name"]].drop_duplicates("store_id")
             .set_index("store_id")["store_name"].astype(object))
    out["store_name"] = out["store_id"].map(names)
    out = out.astype({"store_name": object, "category": object})
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
