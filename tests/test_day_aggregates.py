"""analytics.day_aggregates.aggregate_day on real SQLite and PostgreSQL: the streamed join
and counting of a hand-made day, checked number by number and against the in-memory path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.day_aggregates import EstimatesError, aggregate_day
from analytics.purchases import join_purchases
from analytics.summaries import category_cells, sales_by_age_group, sales_from_cells
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame, purchase_lines_for_day

DAY = dt.date(2026, 3, 14)
BINS = AgeBins.parse("0-17,18-24,25-34,35-44,45-54,55-64,65+")
T = dt.datetime.combine(DAY, dt.time(12))
# receipt: (store, cashier, ts, id_checked, [(product, quantity, amount), ...])
RECEIPTS = {
    1: (1, 101, T, False, [(1, 1, 2.99), (1, 2, 5.98), (2, 1, 3.50), (3, 1, 1.15)]),
    2: (1, 101, T, None, [(3, 1, 1.15), (3, 1, 1.15), (4, 3, 5.37)]),
    3: (1, 102, T, None, [(1, 1, 2.99)]),
    4: (2, 201, T, True, [(2, 1, 3.50), (4, 1, 1.79)]),
    5: (2, 201, T, None, [(4, 1, 1.79)]),
    6: (1, 101, dt.datetime.combine(DAY, dt.time()) - dt.timedelta(microseconds=1), False,
        [(1, 1, 2.99)]),  # the day before
    7: (1, 101, dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time()), False,
        [(1, 1, 2.99)]),  # the day after
    8: (2, 201, T, False, [(1, 1, 2.99)]),
}
AGES = {1: 19.0, 2: 40.0, 4: 24.9, 5: None, 6: 16.0, 7: 16.0, 8: 25.0}  # 3: no photo


@pytest.fixture
def engine(db_url):
    eng = make_engine(db_url)
    create_schema(eng)
    insert_frame(eng, "stores", pd.DataFrame({"store_id": [1, 2],
                                              "name": ["Northgate", "O'Brien's"]}))
    insert_frame(eng, "cashiers", pd.DataFrame({"cashier_id": [101, 102, 201],
                                                "store_id": [1, 1, 2],
                                                "name": ["Sam", "Ada", "Luis"]}))
    insert_frame(eng, "products", pd.DataFrame({
        "product_id": [1, 2, 3, 4], "name": ["Lager", "IPA", "Milk 1l", "Crisps"],
        "category": ["beer", "beer", "dairy", "snacks"],
        "age_restricted": [True, True, False, False]}))
    insert_frame(eng, "receipts", pd.DataFrame(
        [(rid, s, c, ts, chk) for rid, (s, c, ts, chk, _) in RECEIPTS.items()],
        columns=["receipt_id", "store_id", "cashier_id", "ts", "id_checked"]))
    insert_frame(eng, "receipt_lines", pd.DataFrame(
        [(rid, n, p, q, a) for rid, (*_, lines) in RECEIPTS.items()
         for n, (p, q, a) in enumerate(lines, start=1)],
        columns=["receipt_id", "line_no", "product_id", "quantity", "amount"]))
    yield eng
    eng.dispose()


def _estimates() -> pd.DataFrame:
    frame = pd.DataFrame({"receipt_id": list(AGES), "age": list(AGES.values())}, dtype=object)
    frame = frame.astype({"receipt_id": "int64", "age": "float64"})
    return frame.assign(age_group=assign_age_groups(frame["age"], BINS), face_count=1)


def test_cells_count_distinct_receipts_at_every_level(engine):
    cells = aggregate_day(engine, DAY, _estimates(), challenge_age=25).cells
    got = cells.astype({"age_group": str, "category": str}).set_index(
        ["store_id", "age_group", "product_id"]).sort_index()

    lager = got.loc[(1, "18-24", 1)]  # two Lager lines on receipt 1: one receipt, 3 items
    assert (lager["receipts"], lager["items"], lager["lines"]) == (1, 3, 2)
    assert lager["revenue"] == pytest.approx(8.97)
    milk = got.loc[(1, "35-44", 3)]  # two Milk lines on receipt 2
    assert (milk["receipts"], milk["items"]) == (1, 2)
    # Receipt 1 holds Lager and IPA: one beer receipt, counted once across the two products.
    beer = got.loc[(1, "18-24")].query("category == 'beer'")
    assert beer["receipts"].sum() == 2 and beer["category_receipts"].sum() == 1
    assert got.loc[(1, "18-24"), "group_receipts"].sum() == 1
    # No estimate (3) and an estimate without an age (5) are both "unknown"; 6 and 7 are
    # other days.
    assert got.loc[(1, "unknown"), "group_receipts"].sum() == 1
    assert got.loc[(2, "unknown"), "group_receipts"].sum() == 1
    assert cells["group_receipts"].sum() == 6
    assert list(cells["age_group"].cat.categories) == BINS.labels


def test_sql_path_equals_the_in_memory_path(engine):
    estimates = _estimates()
    cells = aggregate_day(engine, DAY, estimates, challenge_age=25).cells
    from_sql = sales_from_cells(category_cells(cells), min_cell=1)
    in_memory = sales_by_age_group(join_purchases(purchase_lines_for_day(engine, DAY),
                                                  estimates), min_cell=1)
    pd.testing.assert_frame_equal(from_sql, in_memory)
    suppressed = sales_from_cells(category_cells(cells), min_cell=2)
    assert suppressed["suppressed"].tolist() == (in_memory["receipts"] < 2).tolist()
    assert suppressed.loc[suppressed["suppressed"], "revenue"].isna().all()


def test_flagged_and_alcohol_sales(engine):
    result = aggregate_day(engine, DAY, _estimates(), challenge_age=25)
    # Age-restricted receipts of the day: 1 (19), 3 (no estimate), 4 (24.9), 8 (25.0: not
    # under 25). Receipt 6 (16) was the day before.
    assert result.flagged["receipt_id"].tolist() == [1, 4]
    assert result.flagged["id_checked"].tolist() == [False, True]
    assert result.flagged["age"].tolist() == [19.0, 24.9]
    assert result.flagged["cashier_id"].tolist() == [101, 201]
    sales = result.restricted_sales.set_index("cashier_id")
    assert sales.loc[101, ["alcohol_sales", "with_age", "flagged"]].tolist() == [1, 1, 1]
    assert sales.loc[102, ["alcohol_sales", "with_age", "flagged"]].tolist() == [1, 0, 0]
    assert sales.loc[201, ["alcohol_sales", "with_age", "flagged"]].tolist() == [2, 2, 1]
    stricter = aggregate_day(engine, DAY, _estimates(), challenge_age=19)
    assert stricter.flagged.empty and stricter.restricted_sales["flagged"].sum() == 0


def test_flagged_by_the_models_probability_where_it_has_one(engine):
    """With an operating point, P(under the challenge age) decides, whatever the point
    estimate says; an estimate without a probability falls back to the age rule."""
    estimates = _estimates()
    # receipt 1 (19.0) is unlikely under 25, 8 (25.0) likely, 4 (24.9) has no probability.
    estimates["p_under"] = estimates["receipt_id"].map({1: 0.10, 2: 0.01, 8: 0.60})
    result = aggregate_day(engine, DAY, estimates, challenge_age=25, flag_probability=0.3)
    assert result.flagged["receipt_id"].tolist() == [4, 8]
    assert result.flagged["p_under"].tolist()[1] == 0.60
    assert np.isnan(result.flagged["p_under"].tolist()[0])
    sales = result.restricted_sales.set_index("cashier_id")
    assert sales.loc[101, "flagged"] == 0 and sales.loc[201, "flagged"] == 2
    # Without an operating point the probabilities are carried but the age rule decides.
    by_age = aggregate_day(engine, DAY, estimates, challenge_age=25)
    assert by_age.flagged["receipt_id"].tolist() == [1, 4]


def test_a_day_without_receipts_and_bad_estimates(engine):
    empty = aggregate_day(engine, DAY + dt.timedelta(days=5), _estimates(), challenge_age=25)
    assert empty.cells.empty and empty.flagged.empty and empty.restricted_sales.empty
    assert sales_from_cells(category_cells(empty.cells), min_cell=10).empty
    twice = pd.concat([_estimates(), _estimates().head(1)])
    with pytest.raises(EstimatesError, match="several estimates"):
        aggregate_day(engine, DAY, twice, challenge_age=25)
    with pytest.raises(EstimatesError, match="age_group"):
        aggregate_day(engine, DAY, _estimates().drop(columns="age_group"), challenge_age=25)


def test_plain_string_age_groups_work_too(engine):
    estimates = _estimates().astype({"age_group": str})
    cells = aggregate_day(engine, DAY, estimates, challenge_age=25).cells
    assert set(cells["age_group"].astype(str)) == {"18-24", "25-34", "35-44", "unknown"}
    np.testing.assert_allclose(cells["revenue"].sum(), sum(
        a for rid, (*_, lines) in RECEIPTS.items() if rid not in (6, 7)
        for _, _, a in lines))


@pytest.fixture
def random_day(db_url):
    """A day of 300 receipts with 1-12 lines each, repeated products and categories, three
    stores, and estimates for most receipts."""
    rng = np.random.default_rng(7)
    eng = make_engine(db_url)
    create_schema(eng)
    insert_frame(eng, "stores", pd.DataFrame({"store_id": [1, 2, 3], "name": ["A", "B", "C"]}))
    insert_frame(eng, "cashiers", pd.DataFrame({"cashier_id": [11, 21, 31],
                                                "store_id": [1, 2, 3], "name": ["x", "y", "z"]}))
    n_products = 40
    insert_frame(eng, "products", pd.DataFrame({
        "product_id": np.arange(1, n_products + 1) * 10,
        "name": [f"p{i}" for i in range(n_products)],
        "category": [f"c{i % 6}" for i in range(n_products)],
        "age_restricted": [i % 6 == 0 for i in range(n_products)]}))
    ids = rng.choice(np.arange(1000, 5000), size=300, replace=False)
    stores = rng.integers(1, 4, size=300)
    insert_frame(eng, "receipts", pd.DataFrame({
        "receipt_id": ids, "store_id": stores, "cashier_id": stores * 10 + 1,
        "ts": T + pd.to_timedelta(rng.integers(0, 36_000, size=300), unit="s"),
        "id_checked": pd.array(rng.choice([True, False, None], size=300), dtype="boolean")}))
    lines = [(rid, n, int(rng.integers(1, n_products + 1)) * 10, int(rng.integers(1, 4)),
              round(float(rng.uniform(0.2, 30)), 2))
             for rid in ids for n in range(1, int(rng.integers(1, 13)) + 1)]
    insert_frame(eng, "receipt_lines", pd.DataFrame(
        lines, columns=["receipt_id", "line_no", "product_id", "quantity", "amount"]))
    with_estimate = rng.random(300) < 0.85
    ages = pd.Series(rng.uniform(12, 80, size=300)[with_estimate])
    estimates = pd.DataFrame({"receipt_id": ids[with_estimate], "age": ages.round(1)})
    estimates["age_group"] = assign_age_groups(estimates["age"], BINS)
    yield eng, estimates
    eng.dispose()


def _sorted(cells: pd.DataFrame) -> pd.DataFrame:
    return cells.sort_values(["store_id", "age_group", "product_id"], ignore_index=True)


def test_how_the_day_is_read_never_changes_the_numbers(random_day):
    """Chunks cutting receipts apart, the sparse sums and the plain SQLAlchemy reader give
    what the default path gives, and the default path matches pandas over the raw lines."""
    engine, estimates = random_day
    default = aggregate_day(engine, DAY, estimates, challenge_age=25)
    for options in ({"chunk_rows": 7}, {"chunk_rows": 1, "dense_limit": 0},
                    {"fast": False, "chunk_rows": 50}):
        other = aggregate_day(engine, DAY, estimates, challenge_age=25, **options)
        pd.testing.assert_frame_equal(_sorted(other.cells), _sorted(default.cells))
        pd.testing.assert_frame_equal(other.flagged, default.flagged)
        pd.testing.assert_frame_equal(other.restricted_sales, default.restricted_sales)

    lines = purchase_lines_for_day(engine, DAY).merge(estimates, on="receipt_id", how="left")
    lines["age_group"] = lines["age_group"].astype(object).fillna("unknown")
    keys = ["store_id", "age_group", "product_id"]
    expected = lines.groupby(keys).agg(receipts=("receipt_id", "nunique"),
                                       lines=("receipt_id", "size"),
                                       items=("quantity", "sum"), revenue=("amount", "sum"))
    got = default.cells.astype({"age_group": str}).set_index(keys).sort_index()
    assert got.index.equals(expected.index)
    for column in ("receipts", "lines", "items"):
        assert got[column].tolist() == expected[column].tolist(), column
    np.testing.assert_allclose(got["revenue"], expected["revenue"].astype(float))
    by_category = got.groupby(["store_id", "age_group", "category"], observed=True)[
        "category_receipts"].sum()
    expected_category = lines.groupby(["store_id", "age_group", "category"])[
        "receipt_id"].nunique()
    assert by_category.sort_index().tolist() == expected_category.sort_index().tolist()
    by_group = got.groupby(["store_id", "age_group"], observed=True)["group_receipts"].sum()
    assert by_group.tolist() == lines.groupby(["store_id", "age_group"])[
        "receipt_id"].nunique().tolist()

    restricted = lines.loc[lines["age_restricted"].astype(bool)].drop_duplicates("receipt_id")
    flagged = restricted.loc[restricted["age"] < 25].sort_values("receipt_id")
    assert default.flagged["receipt_id"].tolist() == flagged["receipt_id"].tolist()
    assert default.restricted_sales["alcohol_sales"].sum() == len(restricted)


def test_counting_per_estimated_year_rolls_up_to_the_same_cells(engine):
    """The night counts receipts per "group|year" (for the corrected estimates) and sums
    back to groups: exactly the cells that counting per group gives."""
    from analytics.group_estimates import group_labels, hard_cells, with_year_labels, year_rows

    estimates = _estimates()
    plain = aggregate_day(engine, DAY, estimates, challenge_age=25)
    fine = aggregate_day(engine, DAY, with_year_labels(estimates), challenge_age=25)
    rolled = hard_cells(fine.cells, group_labels(estimates))
    keys = ["store_id", "age_group", "product_id"]
    pd.testing.assert_frame_equal(
        rolled.astype({"age_group": str}).sort_values(keys, ignore_index=True),
        plain.cells.astype({"age_group": str}).sort_values(keys, ignore_index=True),
        check_categorical=False)
    pd.testing.assert_frame_equal(fine.flagged, plain.flagged)
    rows = year_rows(fine.cells)
    # Store 1's receipts 1 (19.0), 2 (40.0) and 3 (no photo), one row per estimated year.
    store = rows[(rows["store_id"] == 1) & rows["category"].isna()].set_index("year")
    assert store["receipts"].to_dict() == {-1: 1, 19: 1, 40: 1}
    beer = rows[(rows["store_id"] == 1) & (rows["category"] == "beer")].set_index("year")
    assert beer["receipts"].to_dict() == {-1: 1, 19: 1}
