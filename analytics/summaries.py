"""Aggregate tables safe to hand to marketing, and the glance the job prints at the end.

Marketing only ever sees cells of at least `min_cell` receipts: smaller cells could point at
individual shoppers. Small cells stay in the table, marked suppressed with their numbers
nulled, so readers see that something is hidden instead of wrongly summing what is shown;
where one hidden cell could be recovered from its store's total, a second is hidden too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics.purchases import require_columns

CELL_KEYS = ["store_id", "store_name", "age_group", "category"]
SALES_COLUMNS = [
    *CELL_KEYS,
    "receipts",
    "items",
    "revenue",
    "share_of_store_revenue",
    "est_receipts",
    "est_receipts_low",
    "est_receipts_high",
    "est_revenue",
    "suppressed",
]
# The corrected estimates (analytics/estimates.py): receipts each true age group made, with a
# 90 % interval, and their revenue; null where the cell is suppressed or was not estimated.
EST_COLUMNS = ["est_receipts", "est_receipts_low", "est_receipts_high", "est_revenue"]
SALES_DTYPES = {
    "store_id": "int64",
    "store_name": "str",
    "age_group": "str",
    "category": "str",
    "receipts": "Int64",
    "items": "Int64",
    "revenue": "Float64",
    "share_of_store_revenue": "Float64",
    "est_receipts": "Float64",
    "est_receipts_low": "Float64",
    "est_receipts_high": "Float64",
    "est_revenue": "Float64",
    "suppressed": "bool",
}


def sales_by_age_group(joined: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Receipts, items and revenue per store x age group x category, small cells suppressed.

    receipts counts distinct receipts in the cell; items sums quantity; revenue sums amount
    (rounded to cents); share_of_store_revenue divides by the store's whole-day revenue.
    Rows come in store, age-group (age order when Categorical), category order.
    """
    _check_min_cell(min_cell)
    require_columns(joined, [*CELL_KEYS, "receipt_id", "quantity", "amount"], "joined purchases")
    cells = (
        joined.groupby(CELL_KEYS, observed=True, sort=True)
        .agg(receipts=("receipt_id", "nunique"), items=("quantity", "sum"),
             revenue=("amount", "sum"))
        .reset_index()
    )
    return sales_from_cells(cells, min_cell)


def category_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """Product cells (from day_aggregates.aggregate_day) rolled up to store x age group x category.

    A category's distinct receipts are the sum of its products' `category_receipts`, which
    count each receipt once per category; summing `receipts` would count a receipt with two
    beers twice.
    """
    require_columns(cells, [*CELL_KEYS, "category_receipts", "items", "revenue"],
                    "product cells")
    return (
        cells.groupby(CELL_KEYS, observed=True, sort=True)
        .agg(receipts=("category_receipts", "sum"), items=("items", "sum"),
             revenue=("revenue", "sum"))
        .reset_index()
    )


def sales_from_cells(cells: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """The marketing table from unsuppressed category cells (CELL_KEYS, receipts, items,
    revenue, and the EST_COLUMNS where estimated): adds each cell's share of its store's
    revenue, then suppresses small cells.

    The share is computed before suppression, from all of the store's revenue, so hidden
    cells still count in the denominator. Suppression is decided on the observed receipts,
    as ever, and hides the cell's estimates too.
    """
    _check_min_cell(min_cell)
    require_columns(cells, [*CELL_KEYS, "receipts", "items", "revenue"], "category cells")
    if cells.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SALES_DTYPES.items()})
    cells = cells.assign(**{c: cells.get(c, pd.NA) for c in EST_COLUMNS})
    cells = cells.sort_values(CELL_KEYS, kind="stable").reset_index(drop=True)
    store_revenue = cells.groupby("store_id")["revenue"].sum()
    day_revenue = cells["store_id"].map(store_revenue).astype("Float64")
    cells["share_of_store_revenue"] = (
        cells["revenue"].astype("Float64") / day_revenue.where(day_revenue != 0)
    )
    cells["revenue"] = cells["revenue"].round(2)
    cells = cells.astype({c: "Float64" for c in EST_COLUMNS})
    for column in EST_COLUMNS[:3]:
        cells[column] = cells[column].round(1)
    cells["est_revenue"] = cells["est_revenue"].round(2)
    cells = cells.astype({c: t for c, t in SALES_DTYPES.items() if c != "suppressed"})

    hidden = complementary_suppression(cells, cells["receipts"] < min_cell)
    cells["suppressed"] = hidden.to_numpy(dtype=bool)
    for column in ["receipts", "items", "revenue", "share_of_store_revenue", *EST_COLUMNS]:
        cells[column] = cells[column].mask(hidden)
    return cells[SALES_COLUMNS].reset_index(drop=True)


def complementary_suppression(cells: pd.DataFrame, small: pd.Series) -> pd.Series:
    """`small` plus, in each store with exactly one small cell, its smallest other cell.

    Any shown cell's revenue and share give the store's total revenue; with one hidden cell
    that total minus the shown cells *is* the hidden cell. A second hidden cell leaves two
    unknowns in one equation.
    """
    hidden = small.astype(bool).copy()
    per_store = hidden.groupby(cells["store_id"]).transform("sum")
    candidates = cells.loc[(per_store == 1) & ~hidden]
    if not candidates.empty:
        complement = candidates.groupby("store_id")["receipts"].idxmin()
        hidden.loc[complement.to_numpy()] = True
    return hidden


def _check_min_cell(min_cell: int) -> None:
    if min_cell < 1:
        raise ValueError(f"min_cell must be at least 1, got {min_cell}")


def category_share_table(sales: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """Percent of each age group's spend per category, chain-wide, for a console glance.

    Built from the published (unsuppressed) cells only, so it never reveals a hidden cell;
    rows are age groups, columns the ``top`` categories by revenue.
    """
    shown = sales.loc[~sales["suppressed"].astype(bool)]
    if shown.empty:
        return pd.DataFrame()
    spend = shown.pivot_table(index="age_group", columns="category", values="revenue",
                              aggfunc="sum", fill_value=0.0, sort=False).astype(float)
    spend = spend[spend.sum().sort_values(ascending=False).index[:top]]
    percent = spend.div(shown.groupby("age_group", sort=False)["revenue"].sum().astype(float),
                        axis=0) * 100
    order = [g for g in shown["age_group"].drop_duplicates()]
    return percent.loc[order].round(1)


AGE_MIX_DTYPES = {
    "scope": "str",  # "store" or "chain"
    "store_id": "Int64",  # null on chain-wide rows
    "store_name": "str",
    "age_group": "str",
    "receipts": "Int64",  # observed: receipts whose estimated age is in the group
    "est_receipts": "Float64",  # corrected: receipts the group's shoppers really made
    "est_receipts_low": "Float64",
    "est_receipts_high": "Float64",
    "est_share": "Float64",  # of the scope's receipts with an age estimate
    "est_share_low": "Float64",
    "est_share_high": "Float64",
    "suppressed": "bool",
}


def age_mix_table(cells: pd.DataFrame, estimates: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Who shops, corrected: per store (and chain-wide) and age group, the observed receipts
    beside the corrected estimate, its 90 % interval and its share of the receipts with an
    age estimate. The report charts it; suppression as in `sales_from_cells`, on the
    observed receipts ("unknown" rows are shown, not estimated)."""
    _check_min_cell(min_cell)
    from analytics.group_estimates import CHAIN_STORE_ID

    observed = (cells.groupby(["store_id", "age_group"], observed=True, sort=True)
                ["group_receipts"].sum().reset_index(name="receipts"))
    chain_observed = (observed.groupby("age_group", observed=True, sort=True)["receipts"]
                      .sum().reset_index().assign(store_id=CHAIN_STORE_ID))
    observed = pd.concat([observed, chain_observed], ignore_index=True)
    observed["age_group"] = observed["age_group"].astype(str)
    mix = estimates.loc[estimates["category"].isna(),
                        ["store_id", "store_name", "age_group", "est_receipts",
                         "est_receipts_low", "est_receipts_high"]].astype({"age_group": str})
    frame = mix.merge(observed, on=["store_id", "age_group"], how="outer")
    frame["receipts"] = frame["receipts"].fillna(0)
    known = frame["age_group"] != "unknown"
    total = frame.loc[known].groupby("store_id")["est_receipts"].sum()
    denominator = frame["store_id"].map(total).where(known)
    for column, source in (("est_share", "est_receipts"), ("est_share_low", "est_receipts_low"),
                           ("est_share_high", "est_receipts_high")):
        frame[column] = (frame[source] / denominator.where(denominator > 0)).round(4)
    for column in ("est_receipts", "est_receipts_low", "est_receipts_high"):
        frame[column] = frame[column].round(1)
    chain = frame["store_id"] == CHAIN_STORE_ID
    names = frame.loc[~chain].dropna(subset=["store_name"]).drop_duplicates("store_id")
    frame["store_name"] = frame["store_id"].map(names.set_index("store_id")["store_name"])
    frame["scope"] = np.where(chain, "chain", "store")
    frame["store_id"] = frame["store_id"].where(~chain)
    from analytics.recommendations import age_order

    frame = frame.assign(_store=frame["store_id"].fillna(-1),
                         _age=frame["age_group"].map(age_order))
    frame = frame.sort_values(["scope", "_store", "_age"], kind="stable").reset_index(drop=True)
    frame = frame.astype({c: t for c, t in AGE_MIX_DTYPES.items() if c != "suppressed"})
    hidden = complementary_suppression(frame.assign(store_id=frame["_store"]),
                                       frame["receipts"] < min_cell)
    frame["suppressed"] = hidden.to_numpy(dtype=bool)
    for column in [c for c in AGE_MIX_DTYPES if c.startswith(("est_", "receipts"))]:
        frame[column] = frame[column].mask(hidden)
    return frame[list(AGE_MIX_DTYPES)]
