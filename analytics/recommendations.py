"""What each age group buys more than the shopper base does, over a trailing window of days.

Two steps, because the window outlives one night:

1. `affinity_counts` turns a day's product cells into an internal daily table of receipts,
   items and revenue per store x age group at three levels: the group itself, each category
   and each product. Its small cells are not suppressed: summed over 28 days they become the
   large cells that marketing may see. It belongs to the restricted root.
2. `recommendations` sums the window's daily counts (`window_counts`), adds chain-wide rows,
   and keeps, per store (and chain-wide) and age group, the categories and products whose
   share of the group's receipts beats the base share, ranked by a lower confidence bound
   on that lift. Every row has at least max(min_cell, min_support) receipts.

Why a lower bound: a group with 12 receipts that happen to hold 3 energy drinks shows a
lift of 5 that means little; the Wilson lower bound for 3 of 12 is far lower than the bound
for 300 of 1,200 with the same share, so well-supported lifts rank first. The same goes for
the base: a product bought 8 times in a month, all by one group, has a huge lift, but its
base share is too uncertain to trust, so the bound divides by the base share's upper end.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from analytics.age_groups import UNKNOWN
from analytics.purchases import require_columns

GROUP, CATEGORY, PRODUCT = "group", "category", "product"
STORE_SCOPE, CHAIN_SCOPE = "store", "chain"
DEFAULT_Z = 1.96  # two-sided 95% interval; its lower end ranks the rows
DEFAULT_MIN_SUPPORT = 20  # receipts over the window before a lift is worth showing
DEFAULT_TOP = 25  # rows kept per scope x store x age group x level
_NO_ID = -(2**62)  # internal stand-in for "no store" / "no product" in join keys

KEYS = ["store_id", "age_group", "level", "category", "product_id"]
AFFINITY_DTYPES = {
    "store_id": "int64",
    "store_name": "str",
    "age_group": "str",
    "level": "str",
    "category": "str",  # null on group rows
    "product_id": "Int64",  # null on group and category rows
    "product_name": "str",  # null on group and category rows
    "receipts": "int64",
    "items": "int64",
    "revenue": "float64",
}
RECOMMENDATION_DTYPES = {
    "scope": "str",
    "store_id": "Int64",  # null on chain-wide rows
    "store_name": "str",
    "age_group": "str",
    "level": "str",
    "category": "str",
    "product_id": "Int64",
    "product_name": "str",
    "rank": "int64",
    "receipts": "int64",
    "items": "int64",
    "revenue": "float64",
    "group_receipts": "int64",
    "share": "float64",
    "base_share": "float64",
    "lift": "float64",
    "lift_low": "float64",
    "window_start": "object",  # datetime.date
    "window_end": "object",
    "window_days": "int64",
}


def affinity_counts(cells: pd.DataFrame) -> pd.DataFrame:
    """The day's internal counts from product cells (day_aggregates.aggregate_day's `cells`).

    Rows per store x age group: one `group` row (all its receipts), one `category` row per
    category and one `product` row per product, each with distinct receipts, items and
    revenue. Counts add up across days, since a receipt belongs to one day and one store.
    """
    require_columns(cells, ["store_id", "store_name", "age_group", "category", "product_id",
                            "product_name", "receipts", "category_receipts", "group_receipts",
                            "items", "revenue"], "product cells")
    group_keys = ["store_id", "store_name", "age_group"]
    sums = {"items": ("items", "sum"), "revenue": ("revenue", "sum")}
    groups = cells.groupby(group_keys, observed=True).agg(
        receipts=("group_receipts", "sum"), **sums).reset_index()
    categories = cells.groupby([*group_keys, "category"], observed=True).agg(
        receipts=("category_receipts", "sum"), **sums).reset_index()
    products = cells[[*group_keys, "category", "product_id", "product_name", "receipts",
                      "items", "revenue"]]
    parts = [groups.assign(level=GROUP), categories.assign(level=CATEGORY),
             products.assign(level=PRODUCT)]
    frame = pd.concat([_plain(part) for part in parts], ignore_index=True)
    return _typed(frame, AFFINITY_DTYPES)


def window_counts(days: Iterable[pd.DataFrame | Path]) -> pd.DataFrame:
    """Sum daily affinity counts over a window: frames, or Parquet files of them, oldest first.

    DuckDB scans the files and sums in one multi-threaded pass, which for a large chain (28
    days of 1.7 M rows each) takes seconds where a pandas fold took tens of seconds and
    three times the memory. Names are taken from the latest day a key appears in.
    """
    columns = list(AFFINITY_DTYPES)
    select = ", ".join(f'"{c}"' for c in columns)
    files: list[str] = []
    file_orders: list[int] = []
    con = duckdb.connect()
    try:
        parts = []
        for order, day in enumerate(days):
            if isinstance(day, pd.DataFrame):
                con.register(f"day_{order}", pa.Table.from_pandas(day[columns],
                                                                  preserve_index=False))
                parts.append(f"SELECT {select}, {order} AS day_order FROM day_{order}")
            else:
                files.append(str(day))
                file_orders.append(order)
        if files:  # one scan of all files; each row's order from its file's place in the list
            parts.append(f"SELECT {select}, list_extract($orders, list_position($files, "
                         "filename)) AS day_order "
                         "FROM read_parquet($files, filename = true)")
        if not parts:
            return _typed(pd.DataFrame(columns=columns), AFFINITY_DTYPES)
        keys = ", ".join(KEYS)
        sql = f"""
            SELECT {keys},
                   arg_max(store_name, day_order) AS store_name,
                   arg_max(product_name, day_order) AS product_name,
                   CAST(SUM(receipts) AS BIGINT) AS receipts,
                   CAST(SUM(items) AS BIGINT) AS items,
                   SUM(revenue) AS revenue
            FROM ({" UNION ALL ".join(parts)})
            GROUP BY {keys}
        """
        params = {"files": files, "orders": file_orders} if files else {}
        frame = con.sql(sql, params=params).to_arrow_table().to_pandas()
    finally:
        con.close()
    return _typed(frame, AFFINITY_DTYPES)


def recommendations(
    counts: pd.DataFrame,
    *,
    window_start: dt.date,
    window_end: dt.date,
    window_days: int,
    min_cell: int,
    min_support: int = DEFAULT_MIN_SUPPORT,
    z: float = DEFAULT_Z,
    top: int | None = DEFAULT_TOP,
) -> pd.DataFrame:
    """Per scope (each store, and the chain), age group and level, what the group over-buys.

    share = the item's receipts / the group's receipts; base_share = the same for all
    shoppers of the scope (every age group, "unknown" included); lift = share / base_share;
    lift_low = the Wilson lower bound of share over the Wilson upper bound of base_share
    (confidence z each): the smallest lift both samples allow, so an item few people buy at
    all cannot top a list on the strength of a handful of receipts. Kept: known age
    groups, lift > 1, receipts >= max(min_cell, min_support); ranked by lift_low (ties: more
    receipts first), `top` rows per scope x store x age group x level. Aggregates only.
    """
    if min_cell < 1 or min_support < 1:
        raise ValueError("min_cell and min_support must be at least 1")
    require_columns(counts, list(AFFINITY_DTYPES), "affinity counts")
    # Sentinels instead of nulls in join keys (chain rows have no store, category rows no
    # product): null keys do not reliably match in joins. Put back as nulls at the end.
    scoped = pd.concat([counts.assign(scope=STORE_SCOPE), _chain_rows(counts)],
                       ignore_index=True)
    scoped["store_id"] = scoped["store_id"].astype("Float64").fillna(_NO_ID).astype("int64")
    scoped["product_id"] = scoped["product_id"].astype("Float64").fillna(_NO_ID).astype(
        "int64")
    scope_keys = ["scope", "store_id"]
    groups = scoped[scoped["level"] == GROUP]
    group_size = groups.groupby([*scope_keys, "age_group"])["receipts"].sum().rename(
        "group_receipts")
    scope_size = groups.groupby(scope_keys)["receipts"].sum().rename("base_total")
    items = scoped[scoped["level"] != GROUP]
    item_keys = [*scope_keys, "level", "category", "product_id"]
    base = items.groupby(item_keys)["receipts"].sum().rename("base_receipts")

    rows = (items.join(group_size, on=[*scope_keys, "age_group"])
            .join(scope_size, on=scope_keys).join(base, on=item_keys))
    rows = rows[rows["age_group"] != UNKNOWN]
    rows["share"] = rows["receipts"] / rows["group_receipts"]
    rows["base_share"] = rows["base_receipts"] / rows["base_total"]
    rows["lift"] = rows["share"] / rows["base_share"]
    group_low, _ = wilson_interval(rows["receipts"], rows["group_receipts"], z)
    _, base_high = wilson_interval(rows["base_receipts"], rows["base_total"], z)
    rows["lift_low"] = group_low / base_high
    keep = (rows["lift"] > 1) & (rows["receipts"] >= max(min_cell, min_support))
    rows = rows[keep].sort_values(
        [*scope_keys, "age_group", "level", "lift_low", "receipts"],
        ascending=[True, True, True, True, False, False], kind="stable",
        key=lambda col: col.map(age_order) if col.name == "age_group" else col)
    rows["rank"] = rows.groupby([*scope_keys, "age_group", "level"]).cumcount() + 1
    if top is not None:
        rows = rows[rows["rank"] <= top]
    rows = rows.assign(
        store_id=rows["store_id"].astype("Int64").mask(rows["store_id"] == _NO_ID),
        product_id=rows["product_id"].astype("Int64").mask(rows["product_id"] == _NO_ID),
        window_start=window_start, window_end=window_end, window_days=window_days)
    return _typed(rows[list(RECOMMENDATION_DTYPES)], RECOMMENDATION_DTYPES).reset_index(
        drop=True)


def age_order(label: str) -> int:
    """Sort key for age-group labels: by the leading number ("5-9" before "10-17")."""
    digits = "".join(itertools.takewhile(str.isdigit, str(label)))
    return int(digits) if digits else 10**9


def wilson_interval(
    successes: pd.Series, trials: pd.Series, z: float = DEFAULT_Z
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the Wilson score interval for successes/trials; (0, 1) where trials is 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small counts.
    """
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(trials, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = p + z * z / (2 * n)
        margin = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        low = (centre - margin) / (1 + z * z / n)
        high = (centre + margin) / (1 + z * z / n)
    empty = ~(n > 0)
    return (np.where(empty, 0.0, np.clip(low, 0.0, 1.0)),
            np.where(empty, 1.0, np.clip(high, 0.0, 1.0)))


def _chain_rows(counts: pd.DataFrame) -> pd.DataFrame:
    """All stores together: a receipt belongs to one store, so store counts add up."""
    keys = ["age_group", "level", "category", "product_id"]
    chain = counts.groupby(keys, dropna=False, sort=False).agg(
        product_name=("product_name", "last"), receipts=("receipts", "sum"),
        items=("items", "sum"), revenue=("revenue", "sum")).reset_index()
    return chain.assign(scope=CHAIN_SCOPE, store_id=pd.NA, store_name=pd.NA)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as plain strings, so frames with different categories concatenate."""
    return frame.astype({c: "object" for c in frame.columns
                         if isinstance(frame[c].dtype, pd.CategoricalDtype)})


def _typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    out = frame.reindex(columns=list(dtypes))
    return out.astype({c: t for c, t in dtypes.items() if t != "object"})
