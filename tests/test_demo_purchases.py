"""The demo shop day: deterministic, idempotent, realistic, with the planted age effects."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analytics.age_groups import AgeBins, assign_age_groups
from analytics.purchases import join_purchases
from analytics.summaries import sales_by_age_group
from demo.purchases import ID_STRIDE, MAX_LINES, generate_day
from sql.engine import make_engine
from sql.queries import create_schema, insert_frame, photos_for_day, purchase_lines_for_day
from sql.schema import Product, Receipt, Store

DAY = dt.date(2024, 5, 17)
BINS = AgeBins.parse("0-17,18-24,25-34,35-44,45-54,55-64,65+")


def _ages(n: int, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).uniform(14, 88, n).round(1).tolist()


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_same_seed_same_day_same_rows_and_rerun_replaces(engine):
    ages = _ages(50)
    first = generate_day(engine, DAY, stores=2, receipts_per_store=60, shopper_ages=ages, seed=7)
    lines_first = purchase_lines_for_day(engine, DAY)

    again = generate_day(engine, DAY, stores=2, receipts_per_store=60, shopper_ages=ages, seed=7)

    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(purchase_lines_for_day(engine, DAY), lines_first)
    assert _count(engine, Receipt) == 120
    assert _count(engine, Store) == 2
    other = generate_day(engine, DAY, stores=2, receipts_per_store=60, shopper_ages=ages, seed=8)
    assert not other["ts"].equals(first["ts"])
    assert _count(engine, Receipt) == 120


def test_days_coexist_with_their_own_ids(engine):
    ages = _ages(30)
    day1 = generate_day(engine, DAY, stores=1, receipts_per_store=40, shopper_ages=ages, seed=1)
    day2 = generate_day(engine, DAY + dt.timedelta(days=1), stores=1, receipts_per_store=40,
                        shopper_ages=ages, seed=1)
    generate_day(engine, DAY, stores=1, receipts_per_store=40, shopper_ages=ages, seed=1)

    assert _count(engine, Receipt) == 80
    assert set(day1["receipt_id"]).isdisjoint(day2["receipt_id"])
    assert day1["receipt_id"].min() == DAY.toordinal() * ID_STRIDE
    assert day1["receipt_id"].is_monotonic_increasing and day1["ts"].is_monotonic_increasing
    assert (day1["ts"].dt.date == DAY).all()


def test_rerun_also_drops_that_day_s_photo_rows(engine):
    next_day = DAY + dt.timedelta(days=1)
    receipts = generate_day(engine, DAY, stores=1, receipts_per_store=5, shopper_ages=[30.0],
                            seed=1)
    other = generate_day(engine, next_day, stores=1, receipts_per_store=5,
                         shopper_ages=[30.0], seed=1)
    insert_frame(engine, "checkout_photos", pd.DataFrame({
        "photo_id": [1, 2],
        "receipt_id": [int(receipts["receipt_id"].iloc[0]), int(other["receipt_id"].iloc[0])],
        "path": ["x.jpg", "y.jpg"],
        "taken_at": [receipts["ts"].iloc[0], other["ts"].iloc[0]],
    }))
    generate_day(engine, DAY, stores=1, receipts_per_store=5, shopper_ages=[30.0], seed=1)
    assert photos_for_day(engine, DAY).empty
    # only that day's rows go: the next day's photo is still there
    assert list(photos_for_day(engine, next_day)["photo_id"]) == [2]


def test_existing_reference_rows_are_kept(engine):
    insert_frame(engine, "stores", pd.DataFrame({"store_id": [1], "name": ["O'Brien\"; --"]}))
    generate_day(engine, DAY, stores=2, receipts_per_store=5, shopper_ages=[40.0], seed=1)
    with engine.connect() as conn:
        names = conn.execute(sa.select(Store.name).order_by(Store.store_id)).scalars().all()
        restricted = set(conn.execute(
            sa.select(Product.category).where(Product.age_restricted)).scalars())
    assert names == ["O'Brien\"; --", "Riverside"]
    assert restricted == {"beer", "wine", "spirits"}


def test_shoppers_are_used_evenly_and_reported(engine):
    ages = [20.0, 35.5, 70.0]
    receipts = generate_day(engine, DAY, stores=2, receipts_per_store=6, shopper_ages=ages,
                            seed=3)
    assert receipts.columns.tolist() == [
        "receipt_id", "store_id", "ts", "true_age", "shopper_index"]
    assert receipts["shopper_index"].value_counts().tolist() == [4, 4, 4]
    assert (receipts["true_age"] == np.array(ages)[receipts["shopper_index"]]).all()
    assert receipts["store_id"].value_counts().sort_index().tolist() == [6, 6]


@pytest.mark.parametrize("bad", [
    {"shopper_ages": []},
    {"shopper_ages": [30.0, float("nan")]},
    {"shopper_ages": [-1.0]},
    {"shopper_ages": [30.0], "stores": 0},
    {"shopper_ages": [30.0], "stores": 10, "receipts_per_store": ID_STRIDE // 10},
])
def test_bad_arguments_are_refused(sqlite_url, bad):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    with pytest.raises(ValueError):
        generate_day(engine, DAY, seed=1, **bad)


def test_a_realistic_day_with_visible_age_effects(sqlite_url):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    ages = _ages(3000, seed=5)
    receipts = generate_day(engine, DAY, stores=3, receipts_per_store=1000, shopper_ages=ages,
                            seed=11)
    lines = purchase_lines_for_day(engine, DAY)

    hours = receipts["ts"].dt.hour
    assert hours.between(8, 20).all()
    per_hour = hours.value_counts()
    assert per_hour[12] > 1.5 * per_hour[9] and per_hour[18] > 1.5 * per_hour[9]
    assert per_hour[18] > per_hour[15] and per_hour[12] > per_hour[15]
    per_receipt = lines.groupby("receipt_id").size()
    assert len(per_receipt) == 3000 and per_receipt.between(1, MAX_LINES).all()
    assert 3 <= per_receipt.mean() <= 8 and per_receipt.max() >= 10
    assert not lines.duplicated(["receipt_id", "product_id"]).any()
    unit_price = (lines["amount"] / lines["quantity"]).round(2)
    assert (unit_price.groupby(lines["product_id"]).nunique() == 1).all()

    groups = assign_age_groups(receipts["true_age"], BINS)
    estimates = receipts.assign(age=receipts["true_age"], age_group=groups, face_count=1)
    table = sales_by_age_group(join_purchases(lines, estimates), min_cell=10)
    share = table.groupby(["age_group", "category"])["revenue"].sum().unstack(fill_value=0)
    share = share.div(share.sum(axis=1), axis=0)
    assert share.loc["18-24", "energy drinks"] > 3 * share.loc["65+", "energy drinks"]
    assert share.loc["18-24", "beer"] > 2 * share.loc["55-64", "beer"]
    assert share.loc["25-34", "baby"] > 4 * share.loc["55-64", "baby"]
    assert share.loc["65+", "newspapers"] > 4 * share.loc["25-34", "newspapers"]
    assert share.loc["65+", "health"] > 2 * share.loc["18-24", "health"]

    with_alcohol = lines[lines["age_restricted"]].drop_duplicates("receipt_id")
    young = with_alcohol.merge(receipts, on="receipt_id")
    young = young[young["true_age"] < 25]
    assert len(young) >= 20
    assert (young["id_checked"] == False).sum() >= 3  # noqa: E712 (planted lapses)
    assert (young["id_checked"] == True).sum() > (young["id_checked"] == False).sum()  # noqa: E712
    no_alcohol = ~lines.groupby("receipt_id")["age_restricted"].any()
    assert lines.drop_duplicates("receipt_id").set_index("receipt_id").loc[
        no_alcohol[no_alcohol].index, "id_checked"].isna().all()
