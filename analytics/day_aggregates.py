"""One day's purchases joined with its age estimates: product cells and the compliance facts.

The edge where the database meets the counting: `sql.day_reads` streams the day's receipts
and lines in receipt order, `analytics.baskets` counts them. Nothing per line is kept, and
nothing is written to the database (no temporary tables, no uploads), so the job also runs
against a read-only replica.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analytics.age_groups import UNKNOWN
from analytics.baskets import DENSE_CELLS, BasketCounter, BasketIndex, find_positions
from sql.day_reads import CHUNK_ROWS, read_day

CELL_COLUMNS = ["store_id", "store_name", "age_group", "category", "product_id",
                "product_name", "age_restricted", "receipts", "category_receipts",
                "group_receipts", "lines", "items", "revenue"]
RESTRICTED_SALES_COLUMNS = ["store_id", "cashier_id", "alcohol_sales", "with_age", "flagged"]
FLAGGED_COLUMNS = ["receipt_id", "store_id", "cashier_id", "ts", "age", "p_under",
                   "id_checked"]


class EstimatesError(ValueError):
    """Estimates handed to aggregate_day are unusable (missing columns, two for one receipt)."""


@dataclass(frozen=True)
class DayAggregates:
    """What one day's purchases and estimates come to.

    `cells`: one row per store x age group x product sold: store_id, store_name, age_group,
    category, product_id, product_name, age_restricted, receipts (distinct receipts with the
    product), category_receipts, group_receipts, lines, items, revenue. category_receipts
    counts each receipt once per category, at one of its products, so summing it over a
    category's products gives that category's distinct receipts; group_receipts does the same
    for the store x age group as a whole. Unsuppressed: for the restricted side and for
    rolling up.

    `restricted_sales`: per store x cashier, receipts with an age-restricted product
    (alcohol_sales), how many of them have an age estimate (with_age) and how many of those
    are under the threshold (flagged).

    `flagged`: those flagged receipts one by one: receipt_id, store_id, cashier_id, ts, age,
    p_under, id_checked.

    `receipt_stores`: the day's receipts and their stores (receipt_id, store_id), to place
    the day's photos at their store (analytics/camera_quality.py).
    """

    cells: pd.DataFrame
    restricted_sales: pd.DataFrame
    flagged: pd.DataFrame
    receipt_stores: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"receipt_id": pd.Series(dtype="int64"),
                                              "store_id": pd.Series(dtype="int64")}))


def aggregate_day(
    engine: sa.Engine,
    day: dt.date,
    estimates: pd.DataFrame,
    *,
    challenge_age: float,
    flag_probability: float | None = None,
    unknown: str = UNKNOWN,
    fast: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    dense_limit: int = DENSE_CELLS,
) -> DayAggregates:
    """Join `day`'s purchases with `estimates` (receipt_id, age_group, age[, p_under]).

    An age-restricted sale is flagged when the estimate's P(age < challenge_age) is at least
    `flag_probability`; where there is no such probability (no `flag_probability`, or a
    model without an age distribution), when the estimated age is under `challenge_age`.
    Receipts without an estimate, or whose estimate has no group, count as `unknown`;
    estimates for receipts outside the day are ignored. `fast`, `chunk_rows` and
    `dense_limit` choose how, never what: tests vary them to prove it.
    """
    estimates, labels = _estimate_codes(estimates)
    groups = list(labels) if unknown in labels else [*labels, unknown]
    with read_day(engine, day, fast=fast) as reader:
        receipts = reader.receipts()
        products = reader.products().sort_values("product_id", ignore_index=True)
        stores = reader.stores()
        store_ids, store_code = np.unique(receipts["store_id"].to_numpy(np.int64),
                                          return_inverse=True)
        age_code, age, p_under = _per_receipt(receipts["receipt_id"].to_numpy(np.int64),
                                              estimates, groups.index(unknown))
        category_code, categories = pd.factorize(products["category"], sort=True)
        index = BasketIndex(
            receipt_ids=receipts["receipt_id"].to_numpy(np.int64),
            group=store_code * len(groups) + age_code,
            n_groups=max(len(store_ids), 1) * len(groups),
            product_ids=products["product_id"].to_numpy(np.int64),
            product_category=category_code.astype(np.int64),
            product_restricted=products["age_restricted"].to_numpy(bool),
        )
        counter = BasketCounter(index, dense_limit=dense_limit)
        for chunk in reader.lines(chunk_rows):
            counter.add(chunk.receipt_id, chunk.product_id, chunk.quantity, chunk.cents)
        counted, restricted = counter.finish()

    cells = _named_cells(counted, store_ids, groups, products, index.product_category,
                         categories, stores)
    sales, flagged = _compliance(receipts, restricted, age, p_under, challenge_age,
                                 flag_probability)
    receipt_stores = receipts[["receipt_id", "store_id"]].astype("int64").reset_index(drop=True)
    return DayAggregates(cells, sales, flagged, receipt_stores)


def _estimate_codes(estimates: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """receipt_id, age_code (index into the returned labels; -1 for no group), age."""
    missing = [c for c in ("receipt_id", "age_group", "age") if c not in estimates.columns]
    if missing:
        raise EstimatesError(f"estimates lack column(s): {', '.join(missing)}")
    frame = estimates.dropna(subset=["receipt_id"])
    duplicated = frame["receipt_id"].duplicated()
    if duplicated.any():
        ids = frame.loc[duplicated, "receipt_id"].unique()[:5].tolist()
        raise EstimatesError(f"several estimates for receipt(s) {ids}")
    groups = frame["age_group"]
    if isinstance(groups.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in groups.cat.categories]
        codes = groups.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(groups.astype(object), sort=True)
        labels = [str(u) for u in uniques]
    out = pd.DataFrame({
        "receipt_id": frame["receipt_id"].to_numpy(np.int64),
        "age_code": np.asarray(codes, dtype=np.int64),
        "age": pd.to_numeric(frame["age"], errors="coerce").to_numpy(np.float64),
        "p_under": (pd.to_numeric(frame["p_under"], errors="coerce").to_numpy(np.float64)
                    if "p_under" in frame.columns else np.full(len(frame), np.nan)),
    })
    return out.sort_values("receipt_id", ignore_index=True), labels


def _per_receipt(receipt_ids: np.ndarray, estimates: pd.DataFrame,
                 unknown_code: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(age code, age, p_under) for each of the day's receipts: unknown and NaN without an
    estimate."""
    age_code = np.full(len(receipt_ids), unknown_code, dtype=np.int64)
    age = np.full(len(receipt_ids), np.nan)
    p_under = np.full(len(receipt_ids), np.nan)
    position, found = find_positions(estimates["receipt_id"].to_numpy(), receipt_ids)
    codes = estimates["age_code"].to_numpy()[position[found]]
    age_code[found] = np.where(codes >= 0, codes, unknown_code)
    age[found] = estimates["age"].to_numpy()[position[found]]
    p_under[found] = estimates["p_under"].to_numpy()[position[found]]
    return age_code, age, p_under


def _named_cells(counted: pd.DataFrame, store_ids: np.ndarray, groups: Sequence[str],
                 products: pd.DataFrame, category_code: np.ndarray, categories: pd.Index,
                 stores: pd.DataFrame) -> pd.DataFrame:
    """Codes → ids and names, as categoricals built from the codes (no string is copied
    per cell)."""
    group = counted["group"].to_numpy()
    product = counted["product"].to_numpy()
    store_code = group // len(groups)
    names = stores.astype({"store_id": "int64"}).set_index("store_id")["name"]
    store_names = pd.Series(store_ids).map(names).astype(object).to_numpy()
    cells = pd.DataFrame({
        "store_id": store_ids[store_code] if len(store_ids) else np.zeros(0, np.int64),
        "store_name": _codes_to_categorical(store_code, store_names),
        "age_group": pd.Categorical.from_codes(group % len(groups), categories=list(groups)),
        "category": pd.Categorical.from_codes(category_code[product],
                                              categories=categories.astype(object)),
        "product_id": products["product_id"].to_numpy(np.int64)[product],
        "product_name": _codes_to_categorical(product, products["name"].to_numpy(object)),
        "age_restricted": products["age_restricted"].to_numpy(bool)[product],
    })
    for name in ("receipts", "category_receipts", "group_receipts", "lines", "items"):
        cells[name] = counted[name].to_numpy(np.int64)
    cells["revenue"] = counted["cents"].to_numpy(np.int64) / 100.0
    return cells[CELL_COLUMNS]


def _codes_to_categorical(codes: np.ndarray, labels: np.ndarray) -> pd.Categorical:
    """labels[codes] as a Categorical; labels may repeat (two stores of one name)."""
    unique, label_code = np.unique(labels.astype(str), return_inverse=True)
    return pd.Categorical.from_codes(label_code.reshape(-1)[codes], categories=unique)


def _compliance(receipts: pd.DataFrame, restricted: np.ndarray, age: np.ndarray,
                p_under: np.ndarray, challenge_age: float, flag_probability: float | None
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per store x cashier alcohol sales and flags; the flagged receipts one by one."""
    sold = receipts.loc[restricted, ["receipt_id", "store_id", "cashier_id", "ts",
                                     "id_checked"]].assign(age=age[restricted],
                                                           p_under=p_under[restricted])
    # NaN (no estimate) is never under; a probability decides where there is one.
    under = (sold["age"] < challenge_age).to_numpy()
    if flag_probability is not None:
        known = sold["p_under"].notna().to_numpy()
        under = np.where(known, sold["p_under"].to_numpy() >= flag_probability, under)
    sales = (sold.assign(with_age=sold["age"].notna(), flagged=under)
             .groupby(["store_id", "cashier_id"], sort=True)
             .agg(alcohol_sales=("receipt_id", "size"), with_age=("with_age", "sum"),
                  flagged=("flagged", "sum"))
             .reset_index()
             .astype("int64"))
    flagged = sold.loc[under, FLAGGED_COLUMNS].reset_index(drop=True)
    return sales[RESTRICTED_SALES_COLUMNS], flagged
