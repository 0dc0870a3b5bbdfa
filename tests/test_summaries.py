"""join_purchases and sales_by_age_group (checked against DuckDB SQL)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.purchases import DuplicateEstimatesError, MissingColumnsError, join_purchases
from analytics.summaries import sales_by_age_group

BINS = AgeBins.parse("0-17,18-24,25-34,35-44,45-54,55-64,65+")


def _lines(rows: list[tuple]) -> pd.DataFrame:
    """(receipt_id, store_id, category, quantity, amount) -> purchase-lines-like frame."""
    frame = pd.DataFrame(rows, columns=["receipt_id", "store_id", "category", "quantity", "amount"])
    return frame.assign(store_name=frame["store_id"].map({1: "Northgate", 2: "O'Brien's"}))


def _estimates(ages: dict[int, float | None], faces: dict[int, int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"receipt_id": list(ages), "age": list(ages.values())}, dtype=object)
    frame = frame.astype({"receipt_id": "int64", "age": "float64"})
    return frame.assign(
        age_group=assign_age_groups(frame["age"], BINS),
        face_count=[(faces or {}).get(r, 1) for r in ages],
    )


def _random_joined(seed: int, receipts: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_lines = rng.integers(1, 8, receipts)
    receipt_id = np.repeat(np.arange(1000, 1000 + receipts), n_lines)
    store_of = rng.integers(1, 3, receipts)
    lines = _lines(list(zip(
        receipt_id,
        np.repeat(store_of, n_lines),
        rng.choice(["beer", "baby", "snacks", "newspapers", "wine"], receipt_id.size),
        rng.integers(1, 4, receipt_id.size),
        np.round(rng.uniform(0.5, 30, receipt_id.size), 2),
        strict=True,
    )))
    ages = rng.uniform(10, 90, receipts)
    ages[rng.random(receipts) < 0.1] = np.nan  # photo without a usable face
    estimates = _estimates(dict(zip(range(1000, 1000 + receipts), ages, strict=True)))
    estimates = estimates.sample(frac=0.9, random_state=seed)  # some receipts have no photo
    return join_purchases(lines, estimates)


def test_join_keeps_every_line_and_marks_missing_estimates_unknown():
    lines = _lines([(1, 1, "beer", 1, 5.0), (1, 1, "snacks", 2, 3.0), (2, 1, "baby", 1, 9.0),
                    (3, 2, "wine", 1, 7.5)])
    lines.index = [10, 11, 12, 13]
    estimates = _estimates({1: 19.4, 3: None, 99: 40.0}, faces={3: 0})

    joined = join_purchases(lines, estimates)

    assert joined.index.tolist() == [10, 11, 12, 13]
    assert joined["age_group"].tolist() == ["18-24", "18-24", "unknown", "unknown"]
    assert list(joined["age_group"].cat.categories) == BINS.labels
    assert joined["age"].tolist()[:2] == [19.4, 19.4]
    assert joined["face_count"].tolist() == [1, 1, pd.NA, 0]
    assert joined["amount"].sum() == lines["amount"].sum()


def test_join_with_plain_string_groups_orders_by_age():
    lines = _lines([(1, 1, "beer", 1, 5.0), (2, 1, "beer", 1, 5.0), (3, 1, "beer", 1, 5.0)])
    estimates = pd.DataFrame({"receipt_id": [1, 2, 3], "age": [7.0, 30.0, 12.0],
                              "age_group": ["5-9", "30+", "10-17"], "face_count": [1, 1, 1]})
    joined = join_purchases(lines, estimates)
    assert list(joined["age_group"].cat.categories) == ["5-9", "10-17", "30+", "unknown"]


def test_join_refuses_duplicate_estimates_and_missing_columns():
    lines = _lines([(1, 1, "beer", 1, 5.0)])
    with pytest.raises(DuplicateEstimatesError, match=r"\[1\]"):
        join_purchases(lines, _estimates({1: 20.0}).pipe(lambda e: pd.concat([e, e])))
    with pytest.raises(MissingColumnsError, match="face_count"):
        join_purchases(lines, _estimates({1: 20.0}).drop(columns="face_count"))


def test_sales_by_age_group_counts_distinct_receipts_and_suppresses_small_cells():
    lines = _lines([
        (1, 1, "beer", 2, 10.0), (1, 1, "beer", 1, 5.0),  # one receipt, two beer lines
        (2, 1, "beer", 6, 30.0),
        (3, 1, "beer", 1, 5.0),
        (4, 1, "baby", 1, 50.0),  # a lone 30-year-old buying baby things: small cell
        (5, 2, "beer", 1, 4.0),
        (6, 1, "wine", 1, 8.0), (7, 1, "wine", 1, 9.0),  # two more: the complement
    ])
    estimates = _estimates({1: 20.2, 2: 24.9, 3: 18.0, 4: 30.0, 5: 22.0, 6: 70.0, 7: 71.0})

    table = sales_by_age_group(join_purchases(lines, estimates), min_cell=2)

    assert table.columns.tolist() == [
        "store_id", "store_name", "age_group", "category", "receipts", "items", "revenue",
        "share_of_store_revenue", "est_receipts", "est_receipts_low", "est_receipts_high",
        "est_revenue", "suppressed",
    ]
    assert table["est_receipts"].isna().all()  # joined purchases carry no corrected estimate
    beer = table.iloc[0]
    assert (beer["store_id"], beer["age_group"], beer["category"]) == (1, "18-24", "beer")
    assert (beer["receipts"], beer["items"], beer["revenue"]) == (3, 10, 50.0)
    assert beer["share_of_store_revenue"] == pytest.approx(50.0 / 117.0)
    assert not beer["suppressed"]
    small = table[(table["store_id"] == 1) & (table["category"] == "baby")].iloc[0]
    assert small["suppressed"] and small["age_group"] == "25-34"
    assert all(pd.isna(small[c]) for c in ["receipts", "items", "revenue",
                                           "share_of_store_revenue"])
    # Store 1's total (50 / share) minus its shown cells would give the baby cell away, so
    # its smallest other cell (65+ wine, 2 receipts) is hidden too.
    wine = table[(table["store_id"] == 1) & (table["category"] == "wine")].iloc[0]
    assert wine["suppressed"] and pd.isna(wine["revenue"])
    other_store = table[table["store_id"] == 2].iloc[0]
    assert other_store["suppressed"] and other_store["store_name"] == "O'Brien's"
    assert len(table) == 4


@pytest.mark.parametrize("min_cell", [1, 20, 35])
def test_sales_by_age_group_matches_duckdb(min_cell):
    joined = _random_joined(seed=min_cell)
    ours = sales_by_age_group(joined, min_cell=min_cell)

    frame = joined.assign(age_group=joined["age_group"].astype(str))  # noqa: F841 (DuckDB)
    expected = duckdb.sql(f"""
        WITH cells AS (
            SELECT store_id, store_name, age_group, category,
                   count(DISTINCT receipt_id) AS receipts,
                   sum(quantity) AS items,
                   sum(amount) AS revenue
            FROM frame GROUP BY ALL
        ), stores AS (
            SELECT store_id, sum(amount) AS store_revenue FROM frame GROUP BY store_id
        )
        SELECT store_id, age_group, category,
               CASE WHEN receipts >= {min_cell} THEN receipts END AS receipts,
               CASE WHEN receipts >= {min_cell} THEN items END AS items,
               CASE WHEN receipts >= {min_cell} THEN round(revenue, 2) END AS revenue,
               CASE WHEN receipts >= {min_cell} THEN revenue / store_revenue END AS share,
               receipts < {min_cell} AS suppressed
        FROM cells JOIN stores USING (store_id)
    """).df()

    merged = ours.merge(expected, on=["store_id", "age_group", "category"], how="outer",
                        suffixes=("", "_sql"), indicator=True)
    assert (merged["_merge"] == "both").all(), "cells differ between pandas and DuckDB"
    small = merged["suppressed_sql"].astype(bool)
    assert merged.loc[small, "suppressed"].all()
    # Beyond the small cells, exactly the smallest other cell of each store with one small cell.
    small_per_store = small.groupby(merged["store_id"]).sum()
    extra = merged.loc[merged["suppressed"] & ~small]
    assert sorted(extra["store_id"]) == sorted(small_per_store[small_per_store == 1].index)
    for row in extra.itertuples():
        shown = merged.loc[(merged["store_id"] == row.store_id) & ~small, "receipts_sql"]
        assert row.receipts_sql == shown.min()
    assert merged["suppressed"].any() or min_cell == 1
    assert not merged["suppressed"].all()
    merged = merged.loc[~merged["suppressed"]]
    for ours_col, sql_col in [("receipts", "receipts_sql"), ("items", "items_sql")]:
        assert merged[ours_col].astype("Float64").equals(merged[sql_col].astype("Float64"))
    np.testing.assert_allclose(merged["revenue"].astype(float), merged["revenue_sql"], rtol=1e-9)
    np.testing.assert_allclose(merged["share_of_store_revenue"].astype(float),
                               merged["share"], rtol=1e-9)


def test_visible_and_suppressed_cells_cover_every_line():
    joined = _random_joined(seed=7)
    table = sales_by_age_group(joined, min_cell=1)
    assert table["revenue"].sum() == pytest.approx(joined["amount"].sum())
    assert table.groupby("store_id")["share_of_store_revenue"].sum().tolist() == pytest.approx(
        [1.0, 1.0])
    assert "unknown" in set(table["age_group"])


def test_sales_by_age_group_orders_rows_and_types_columns():
    table = sales_by_age_group(_random_joined(seed=3), min_cell=5)
    order = {label: i for i, label in enumerate(BINS.labels)}
    keys = list(zip(table["store_id"], table["age_group"].map(order), table["category"],
                    strict=True))
    assert keys == sorted(keys)
    assert {c: str(t) for c, t in table.dtypes.items()} == {
        "store_id": "int64", "store_name": "str", "age_group": "str", "category": "str",
        "receipts": "Int64", "items": "Int64", "revenue": "Float64",
        "share_of_store_revenue": "Float64", "est_receipts": "Float64",
        "est_receipts_low": "Float64", "est_receipts_high": "Float64", "est_revenue": "Float64",
        "suppressed": "bool",
    }


def test_sales_by_age_group_empty_and_bad_input():
    empty = join_purchases(_lines([]), _estimates({}))
    table = sales_by_age_group(empty, min_cell=10)
    assert table.empty and "suppressed" in table.columns
    with pytest.raises(ValueError, match="min_cell"):
        sales_by_age_group(empty, min_cell=0)
    with pytest.raises(MissingColumnsError, match="age_group"):
        sales_by_age_group(_lines([(1, 1, "beer", 1, 5.0)]), min_cell=1)




def test_suppression_hides_the_estimates_of_small_and_complementary_cells():
    from analytics.summaries import sales_from_cells

    cells = pd.DataFrame({
        "store_id": 1, "store_name": "A", "age_group": ["18-24", "25-34", "35-44", "65+"],
        "category": "beer", "receipts": [30, 2, 12, 40], "items": [30, 2, 12, 40],
        "revenue": [60.0, 4.0, 24.0, 80.0],
        "est_receipts": [33.2, 5.1, 10.4, 35.3], "est_receipts_low": [25.0, 0.0, 4.0, 28.0],
        "est_receipts_high": [41.0, 12.0, 17.0, 42.0], "est_revenue": [66.4, 10.2, 20.8, 70.6]})
    table = sales_from_cells(cells, min_cell=10).set_index("age_group")
    estimates = ["est_receipts", "est_receipts_low", "est_receipts_high", "est_revenue"]
    # 25-34 is small; 35-44, the store's next smallest, is hidden with it.
    assert table.loc[["25-34", "35-44"], "suppressed"].all()
    assert table.loc[["25-34", "35-44"], estimates].isna().all().all()
    assert table.loc["18-24", "est_receipts"] == 33.2 and table.loc["65+", "est_revenue"] == 70.6
