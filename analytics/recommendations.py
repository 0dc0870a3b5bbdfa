"""What each age group buys more than the shopper base does, over a trailing window of days.

Two steps, because the window outlives one night:

1. `affinity_counts` turns a day's product cells into an internal daily table of receipts,
   items and revenue per store x age group at three levels: the group itself, each category
   and each product. Its small cells are not suppressed: summed over 28 days they become the
   large cells that marketing may see. It belongs to the restricted root.
2. `window_recommendations` sums the window's daily counts (in DuckDB, from the files),
   adds chain-wide rows, and keeps, per store (and chain-wide) and age group, the
   categories and products whose share of the group's receipts beats the base share,
   ranked by a lower confidence bound on that lift. Every row has at least
   max(min_cell, min_support) receipts.

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
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from analytics.age_groups import UNKNOWN
from analytics.parquet import union_days_sql
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
    # Corrected receipts of the group and of each category (analytics/estimates.py) and the
    # variance of that estimate (from its 90 % interval); null on product rows and where
    # the day was not estimated. Days add up: a window's estimate is the sum of its days'.
    "est_receipts": "float64",
    "est_var": "float64",
}
# Columns a day written before the corrected estimates lacks: read as nulls.
OPTIONAL_AFFINITY = {"est_receipts": "DOUBLE", "est_var": "DOUBLE"}
Z90 = 1.6448536269514722
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
    "est_share": "float64",  # the same three from the corrected estimates (category rows)
    "est_lift": "float64",
    "est_lift_low": "float64",
    "window_start": "object",  # datetime.date
    "window_end": "object",
    "window_days": "int64",
}


def affinity_counts(cells: pd.DataFrame, estimates: pd.DataFrame | None = None
                    ) -> pd.DataFrame:
    """The day's internal counts from product cells (day_aggregates.aggregate_day's `cells`).

    Rows per store x age group: one `group` row (all its receipts), one `category` row per
    category and one `product` row per product, each with distinct receipts, items and
    revenue. Counts add up across days, since a receipt belongs to one day and one store.
    `estimates` (analytics.group_estimates.DayEstimates.frame) adds the corrected receipts
    and their variance to the group and category rows.
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
    if estimates is not None and not estimates.empty:
        est = estimates.loc[estimates["store_id"] >= 0]  # not the chain-wide unit
        est = est.assign(level=np.where(est["category"].isna(), GROUP, CATEGORY),
                         est_var=((est["est_receipts_high"] - est["est_receipts_low"])
                                  / (2 * Z90)) ** 2)
        keys = ["store_id", "age_group", "level", "category"]
        est = est[[*keys, "est_receipts", "est_var"]].astype({"age_group": object,
                                                              "category": object})
        frame = frame.astype({"age_group": object, "category": object}).merge(
            est, on=keys, how="left")
    return _typed(frame, AFFINITY_DTYPES)


def window_counts(days: Iterable[pd.DataFrame | Path]) -> pd.DataFrame:
    """Sum daily affinity counts over a window: frames, or Parquet files of them, oldest first.

    DuckDB scans the files and sums in one multi-threaded pass, which for a large chain (28
    days of 1.7 M rows each) takes seconds where a pandas fold took tens of seconds and
    three times the memory. Each store's and product's name is the one of the latest day
    it appears in.
    """
    con = duckdb.connect()
    try:
        if not _register_window(con, days):
            return _typed(pd.DataFrame(columns=list(AFFINITY_DTYPES)), AFFINITY_DTYPES)
        frame = con.sql("""
            SELECT w.*, s.store_name, p.product_name FROM window_sums w
            LEFT JOIN store_names s USING (store_id) LEFT JOIN product_names p USING (product_id)
        """).to_arrow_table()
    finally:
        con.close()
    return _typed(frame.to_pandas(), AFFINITY_DTYPES)


def recommendations(counts: pd.DataFrame, **options: Any) -> pd.DataFrame:
    """`window_recommendations` for affinity counts already summed over the window
    (`window_counts`); the keyword options are the same."""
    require_columns(counts, [c for c in AFFINITY_DTYPES if c not in OPTIONAL_AFFINITY],
                    "affinity counts")
    return window_recommendations([counts], **options)


def window_recommendations(
    days: Iterable[pd.DataFrame | Path],
    *,
    window_start: dt.date,
    window_end: dt.date,
    window_days: int,
    min_cell: int,
    min_support: int = DEFAULT_MIN_SUPPORT,
    z: float = DEFAULT_Z,
    top: int | None = DEFAULT_TOP,
) -> pd.DataFrame:
    """Per scope (each store, and the chain), age group and level, what the group over-buys,
    over the sum of daily affinity counts (frames or Parquet files, oldest first).

    share = the item's receipts / the group's receipts; base_share = the same for all
    shoppers of the scope (every age group, "unknown" included); lift = share / base_share;
    lift_low = the Wilson lower bound of share over the Wilson upper bound of base_share
    (confidence z each): the smallest lift both samples allow, so an item few people buy at
    all cannot top a list on the strength of a handful of receipts. Kept: known age
    groups, lift > 1, receipts >= max(min_cell, min_support); ranked by lift_low (ties: more
    receipts first, then category and product id, so reruns rank alike), `top` rows per
    scope x store x age group x level. Aggregates only.

    Computed inside DuckDB: the window's tens of millions of rows never become a pandas
    frame, and only the kept rows leave the database.
    """
    if min_cell < 1 or min_support < 1:
        raise ValueError("min_cell and min_support must be at least 1")
    if top is not None and top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    con = duckdb.connect()
    try:
        if not _register_window(con, days):
            frame = pd.DataFrame(columns=list(RECOMMENDATION_DTYPES))
        else:
            params = {"z": z, "min_receipts": max(min_cell, min_support),
                      "top": top if top is not None else 2**62, "no_id": _NO_ID,
                      "unknown": UNKNOWN, "store": STORE_SCOPE, "chain": CHAIN_SCOPE}
            frame = con.sql(_RECOMMEND_SQL, params=params).to_arrow_table().to_pandas()
    finally:
        con.close()
    frame = frame.assign(window_start=window_start, window_end=window_end,
                         window_days=window_days)
    return _typed(frame[list(RECOMMENDATION_DTYPES)], RECOMMENDATION_DTYPES).reset_index(
        drop=True)


def _register_window(con: duckdb.DuckDBPyConnection, days: Iterable[pd.DataFrame | Path]
                     ) -> bool:
    """Fill three tables in `con` from `days`, or return False when there are none:
    `window_sums` (KEYS and summed receipts, items, revenue), and the names as of the
    latest day an id appears in, `product_names` and `store_names` (from group rows, which
    every store with receipts has). Names are looked up by id, not summed with the keys:
    carrying two strings through the 45 M-row sum would cost more than the sum itself."""
    union = union_days_sql(con, days, list(AFFINITY_DTYPES), day_order=True,
                           optional=OPTIONAL_AFFINITY)
    if union is None:
        return False
    con.execute(f"CREATE TEMP VIEW days AS {union}")
    keys = ", ".join(KEYS)
    con.execute(f"""
        CREATE TEMP TABLE window_sums AS
        SELECT {keys}, CAST(SUM(receipts) AS BIGINT) AS receipts,
               CAST(SUM(items) AS BIGINT) AS items, SUM(revenue) AS revenue,
               -- a window estimate only where every day of it has one
               CASE WHEN COUNT(est_receipts) = COUNT(*) THEN SUM(est_receipts) END
                   AS est_receipts,
               CASE WHEN COUNT(est_var) = COUNT(*) THEN SUM(est_var) END AS est_var
        FROM days GROUP BY {keys}
    """)
    con.execute("""
        CREATE TEMP TABLE product_names AS
        SELECT product_id, arg_max(product_name, day_order) AS product_name
        FROM days WHERE level = 'product' GROUP BY product_id
    """)
    con.execute("""
        CREATE TEMP TABLE store_names AS
        SELECT store_id, arg_max(store_name, day_order) AS store_name
        FROM days WHERE level = 'group' GROUP BY store_id
    """)
    return True


# The arithmetic of `recommendations`, over the table `window_sums`. Chain rows add up the
# stores (a receipt belongs to one store). Sentinels ($no_id) stand in for "no store" and
# "no product" in join keys and become nulls again at the end.
_RECOMMEND_SQL = """
WITH scoped AS (
    SELECT $store AS scope, coalesce(store_id, $no_id) AS store_id, age_group, level,
           category, coalesce(product_id, $no_id) AS product_id, receipts, items, revenue,
           est_receipts, est_var
    FROM window_sums
    UNION ALL
    SELECT $chain, $no_id, age_group, level, category, coalesce(product_id, $no_id),
           SUM(receipts), SUM(items), SUM(revenue),
           CASE WHEN COUNT(est_receipts) = COUNT(*) THEN SUM(est_receipts) END,
           CASE WHEN COUNT(est_var) = COUNT(*) THEN SUM(est_var) END
    FROM window_sums
    GROUP BY age_group, level, category, coalesce(product_id, $no_id)
),
groups AS (
    SELECT scope, store_id, age_group, SUM(receipts) AS group_receipts,
           SUM(est_receipts) AS est_group, SUM(est_var) AS est_group_var
    FROM scoped WHERE level = 'group' GROUP BY ALL
),
totals AS (
    SELECT scope, store_id, SUM(group_receipts) AS base_total FROM groups GROUP BY ALL
),
base AS (
    SELECT scope, store_id, level, category, product_id, SUM(receipts) AS base_receipts
    FROM scoped WHERE level <> 'group' GROUP BY ALL
),
shares AS (
    SELECT i.*, g.group_receipts, g.est_group, g.est_group_var, t.base_total,
           b.base_receipts,
           i.receipts::DOUBLE / g.group_receipts AS share,
           b.base_receipts::DOUBLE / t.base_total AS base_share
    FROM scoped i
    JOIN groups g USING (scope, store_id, age_group)
    JOIN totals t USING (scope, store_id)
    JOIN base b USING (scope, store_id, level, category, product_id)
    WHERE i.level <> 'group' AND i.age_group <> $unknown
),
bounds AS (
    SELECT *, share / base_share AS lift,
           -- Wilson score interval: centre -/+ margin, over 1 + z^2/n, clipped to [0, 1]
           greatest(0.0, least(1.0,
               (share + $z * $z / (2 * group_receipts)
                - $z * sqrt(greatest(0.0, share * (1 - share) / group_receipts
                                     + $z * $z / (4.0 * group_receipts * group_receipts))))
               / (1 + $z * $z / group_receipts))) AS share_low,
           greatest(0.0, least(1.0,
               (base_share + $z * $z / (2 * base_total)
                + $z * sqrt(greatest(0.0, base_share * (1 - base_share) / base_total
                                     + $z * $z / (4.0 * base_total * base_total))))
               / (1 + $z * $z / base_total))) AS base_high
    FROM shares
    WHERE group_receipts > 0 AND base_total > 0
),
corrected AS (
    -- The corrected share of the group's receipts and its lower end: the two estimates'
    -- relative errors combined (delta method on the log share), over base_high as above.
    SELECT *, share_low / base_high AS lift_low,
           CASE WHEN est_receipts > 0 AND est_group > 0
                THEN least(1.0, est_receipts / est_group) END AS est_share,
           CASE WHEN est_receipts > 0 AND est_group > 0
                THEN least(1.0, est_receipts / est_group)
                     * exp(-$z * sqrt(coalesce(est_var, 0) / (est_receipts * est_receipts)
                                      + coalesce(est_group_var, 0) / (est_group * est_group)))
                     / base_high END AS est_lift_low
    FROM bounds
),
ranked AS (
    SELECT *, est_share / base_share AS est_lift,
           row_number() OVER (PARTITION BY scope, store_id, age_group, level
                              ORDER BY coalesce(est_lift_low, lift_low) DESC, receipts DESC,
                                       category, product_id) AS rank
    FROM corrected
    WHERE coalesce(est_share / base_share, lift) > 1 AND receipts >= $min_receipts
)
SELECT r.scope, nullif(r.store_id, $no_id) AS store_id, s.store_name, r.age_group, r.level,
       r.category, nullif(r.product_id, $no_id) AS product_id, p.product_name, r.rank,
       r.receipts, r.items, r.revenue, r.group_receipts, r.share, r.base_share, r.lift,
       r.lift_low, r.est_share, r.est_lift, r.est_lift_low
FROM ranked r
LEFT JOIN store_names s ON s.store_id = r.store_id AND r.scope = $store
LEFT JOIN product_names p ON p.product_id = r.product_id
WHERE r.rank <= $top
ORDER BY r.scope, r.store_id,
         coalesce(TRY_CAST(regexp_extract(r.age_group, '^[0-9]+') AS BIGINT), 1000000000),
         r.level, r.rank
"""


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


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Categoricals as plain strings, so frames with different categories concatenate."""
    return frame.astype({c: "object" for c in frame.columns
                         if isinstance(frame[c].dtype, pd.CategoricalDtype)})


def _typed(frame: pd.DataFrame, dtypes: dict[str, str]) -> pd.DataFrame:
    out = frame.reindex(columns=list(dtypes))
    return out.astype({c: t for c, t in dtypes.items() if t != "object"})
