"""Aggregate tables safe to hand to marketing, and the glance the job prints at the end.

Marketing only ever sees cells of at least `min_cell` receipts: smaller cells could point at
individual shoppers. Small cells stay in the table, marked suppressed with their numbers
nulled, so readers see that something is hidden instead of wrongly summing what is shown;
where one hidden cell could be recovered from its store's total, a second is hidden too.
"""

from __future__ import annotations

import pandas as pd

from analytics.purchases import require_columns

CELL_KEYS = ["store_id", "store_name", "age_group", "category"]
SALES_COLUMNS = [
    *CELL_KEYS,
    "receipts",
    "items",
    "revenue",
    "share_of_store_revenue",
    "suppressed",
]
SALES_DTYPES = {
    "store_id": "int64",
    "store_name": "str",
    "age_group": "str",
    "category": "str",
    "receipts": "Int64",
    "items": "Int64",
    "revenue": "Float64",
    "share_of_store_revenue": "Float64",
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
    revenue): adds each cell's share of its store's revenue, then suppresses small cells.

    The share is computed before suppression, from all of the store's revenue, so hidden
    cells still count in the denominator.
    """
    _check_min_cell(min_cell)
    require_columns(cells, [*CELL_KEYS, "receipts", "items", "revenue"], "category cells")
    if cells.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in SALES_DTYPES.items()})
    cells = cells.sort_values(CELL_KEYS, kind="stable").reset_index(drop=True)
    store_revenue = cells.groupby("store_id")["revenue"].sum()
    day_revenue = cells["store_id"].map(store_revenue).astype("Float64")
    cells["share_of_store_revenue"] = (
        cells["revenue"].astype("Float64") / day_revenue.where(day_revenue != 0)
    )
    cells["revenue"] = cells["revenue"].round(2)
    cells = cells.astype({c: t for c, t in SALES_DTYPES.items() if c != "suppressed"})

    hidden = complementary_suppression(cells, cells["receipts"] < min_cell)
    cells["suppressed"] = hidden.to_numpy(dtype=bool)
    for column in ["receipts", "items", "revenue", "share_of_store_revenue"]:
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
