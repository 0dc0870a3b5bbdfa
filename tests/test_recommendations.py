"""Recommendations: the lift arithmetic on hand-made counts, and the planted month
(tests/month.py): planted affinities come out on top, low-support noise does not, small
cells never reach marketing."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from analytics.day_tables import AFFINITY, AGE_MIX, RECOMMENDATIONS, SALES
from analytics.parquet import iter_partitions, partition_files, read_partition, write_partition
from analytics.recommendations import (
    AFFINITY_DTYPES,
    affinity_counts,
    recommendations,
    wilson_interval,
    window_counts,
    window_recommendations,
)
from sql.engine import make_engine
from sql.queries import purchase_lines_for_day
from tests.month import FIRST_DAY, LAST_DAY, MIN_CELL, NOISE_NAME

# The generated month (`month`, ~30 s to build) is built once, by one worker.
pytestmark = pytest.mark.xdist_group("month")

WINDOW = {"window_start": dt.date(2026, 1, 1), "window_end": dt.date(2026, 1, 28),
          "window_days": 28}
# What demo/purchases.py plants (AFFINITY), as the chain-wide top category per age group.
PLANTED_TOP = {"0-17": {"energy drinks", "snacks"}, "18-24": {"energy drinks"},
               "25-34": {"baby"}, "35-44": {"toys"}, "45-54": {"pet food", "wine"},
               "55-64": {"health", "newspapers"}, "65+": {"newspapers"}}
IDS = {"receipt_id", "photo_id", "cashier_id", "age", "ts"}


def _counts(rows: list[tuple]) -> pd.DataFrame:
    """(store, age_group, level, category, product_id, receipts) -> affinity counts."""
    frame = pd.DataFrame(rows, columns=["store_id", "age_group", "level", "category",
                                        "product_id", "receipts"])
    frame = frame.assign(store_name=frame["store_id"].map({1: "Northgate", 2: "Riverside"}),
                         product_name=frame["product_id"].map(lambda p: f"p{p}"
                                                              if pd.notna(p) else None),
                         items=frame["receipts"] * 2, revenue=frame["receipts"] * 3.0)
    return frame.reindex(columns=list(AFFINITY_DTYPES)).astype({"product_id": "Int64"})


def _shop() -> pd.DataFrame:
    """One store: 1,000 receipts of 18-24s, 8,000 of 65+, 1,000 unknown."""
    return _counts([
        (1, "18-24", "group", None, None, 1000), (1, "65+", "group", None, None, 8000),
        (1, "unknown", "group", None, None, 1000),
        # a planted, well-supported affinity: 30% of 18-24s vs 9% of everyone
        (1, "18-24", "category", "energy drinks", None, 300),
        (1, "65+", "category", "energy drinks", None, 500),
        (1, "unknown", "category", "energy drinks", None, 100),
        # noise: 6 receipts in a month, 5 of them 18-24s: lift 8.3 from next to nothing
        (1, "18-24", "category", "absinthe", None, 5),
        (1, "65+", "category", "absinthe", None, 1),
        # bought less than the base: never recommended
        (1, "18-24", "category", "newspapers", None, 20),
        (1, "65+", "category", "newspapers", None, 2000),
        # a modest affinity with 15 receipts: shown only when min_cell allows it
        (1, "18-24", "category", "pet food", None, 15),
        (1, "65+", "category", "pet food", None, 40),
    ])


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson_interval(pd.Series([3, 0, 50]), pd.Series([12, 0, 100]))
    np.testing.assert_allclose(low, [0.0889, 0.0, 0.4038], atol=1e-4)
    np.testing.assert_allclose(high, [0.5323, 1.0, 0.5962], atol=1e-4)


def test_lift_and_its_lower_bound():
    recs = recommendations(_shop(), min_cell=5, min_support=5, **WINDOW)
    young = recs[(recs["scope"] == "store") & (recs["age_group"] == "18-24")].set_index(
        "category")
    energy = young.loc["energy drinks"]
    assert energy["share"] == pytest.approx(0.3)
    assert energy["base_share"] == pytest.approx(900 / 10000)
    assert energy["lift"] == pytest.approx(0.3 / 0.09)
    assert energy["group_receipts"] == 1000
    # The SQL's Wilson bounds are the textbook ones (wilson_interval, checked above).
    (low,), _ = wilson_interval(pd.Series([300]), pd.Series([1000]))
    _, (high,) = wilson_interval(pd.Series([900]), pd.Series([10000]))
    assert energy["lift_low"] == pytest.approx(low / high)
    # The noise has the biggest raw lift, but its lower bound puts it below energy drinks.
    assert young.loc["absinthe", "lift"] > 2 * energy["lift"]
    assert young.index[0] == "energy drinks" and young.loc["absinthe", "rank"] > 1
    assert "newspapers" not in young.index  # bought less than by all shoppers
    assert set(recs["age_group"]) <= {"18-24", "65+"}  # never "unknown"
    assert recs["window_days"].eq(28).all() and recs["window_end"].eq(WINDOW["window_end"]).all()


def test_corrected_lift_ranks_where_the_estimates_have_it():
    """Hard groups pulled pet food's 18-24 buyers toward 25-34; the corrected estimates put
    them back, and the list ranks on the corrected lower bound."""
    shop = _shop()
    est = {("group", None): (1100.0, 400.0), ("category", "energy drinks"): (250.0, 100.0),
           ("category", "pet food"): (400.0, 400.0), ("category", "absinthe"): (5.0, 4.0),
           ("category", "newspapers"): (20.0, 25.0)}
    young = shop["age_group"] == "18-24"
    for (level, category), (value, var) in est.items():
        row = young & (shop["level"] == level) & (
            shop["category"].isna() if category is None else shop["category"] == category)
        shop.loc[row, ["est_receipts", "est_var"]] = value, var
    recs = recommendations(shop, min_cell=5, min_support=5, **WINDOW)
    mine = recs[(recs["scope"] == "store") & (recs["age_group"] == "18-24")].set_index(
        "category")
    assert mine.index[0] == "pet food"
    pet = mine.loc["pet food"]
    assert pet["est_share"] == pytest.approx(400 / 1100)
    assert pet["est_lift"] == pytest.approx(400 / 1100 / (55 / 10000))
    assert pet["est_lift_low"] < pet["est_lift"]
    assert mine.loc["energy drinks", "est_lift"] == pytest.approx(250 / 1100 / 0.09)
    # The 65+ rows have no estimate: their list is today's, ranked on the observed bound.
    old = recs[(recs["scope"] == "store") & (recs["age_group"] == "65+")]
    assert old["est_lift"].isna().all() and old["rank"].tolist() == sorted(old["rank"])


def test_minimum_support_and_suppression():
    default = recommendations(_shop(), min_cell=10, **WINDOW)
    assert "absinthe" not in set(default["category"])  # 5 receipts < min_support 20
    assert "pet food" not in set(default["category"])  # 15 < 20
    assert default["receipts"].min() >= 20
    lenient = recommendations(_shop(), min_cell=10, min_support=1, **WINDOW)
    assert "pet food" in set(lenient["category"]) and "absinthe" not in set(lenient["category"])
    assert lenient["receipts"].min() >= 10  # min_cell still applies
    with pytest.raises(ValueError):
        recommendations(_shop(), min_cell=0, **WINDOW)


def test_chain_rows_add_up_the_stores():
    two = pd.concat([_shop(), _shop().assign(store_id=2, store_name="Riverside")])
    recs = recommendations(two, min_cell=10, **WINDOW)
    chain = recs[recs["scope"] == "chain"]
    assert chain["store_id"].isna().all() and chain["store_name"].isna().all()
    energy = chain[(chain["age_group"] == "18-24") & (chain["category"] == "energy drinks")]
    assert energy["receipts"].tolist() == [600] and energy["group_receipts"].tolist() == [2000]
    stores = recs[recs["scope"] == "store"]
    assert sorted(stores["store_id"].unique().tolist()) == [1, 2]


def test_window_recommendations_equal_ranking_the_summed_window(tmp_path):
    rng = np.random.default_rng(3)
    days = []
    for i in range(4):  # four days of noisy counts over two stores
        day = pd.concat([_shop(), _shop().assign(store_id=2, store_name="Riverside")])
        days.append(day.assign(receipts=day["receipts"] + rng.integers(0, 30, len(day)),
                               store_name=day["store_name"] + f" v{i}"))
    for i, frame in enumerate(days[:3]):
        write_partition(tmp_path, AFFINITY, FIRST_DAY + dt.timedelta(days=i), frame, {})
    files = [path for _, path in partition_files(tmp_path, AFFINITY, FIRST_DAY, LAST_DAY)]
    options = {"min_cell": 5, "min_support": 5, "top": 2, **WINDOW}
    got = window_recommendations([*files, days[3]], **options)
    expected = recommendations(window_counts(days), **options)
    pd.testing.assert_frame_equal(got, expected)
    assert (got["rank"] <= 2).all() and got["rank"].max() == 2
    assert set(got["store_name"].dropna()) == {"Northgate v3", "Riverside v3"}  # the latest
    assert window_recommendations([], **options).empty


def test_affinity_counts_and_window_sums(tmp_path):
    cells = pd.DataFrame({
        "store_id": [1, 1, 1], "store_name": ["N"] * 3, "age_group": ["18-24"] * 3,
        "category": ["beer", "beer", "snacks"], "product_id": [1, 2, 3],
        "product_name": ["Lager", "IPA", "Crisps"],
        "receipts": [4, 3, 5], "category_receipts": [4, 1, 5], "group_receipts": [6, 0, 1],
        "items": [5, 3, 9], "revenue": [10.0, 6.0, 9.0]})
    daily = affinity_counts(cells)
    group = daily[daily["level"] == "group"]
    assert group["receipts"].tolist() == [7] and group["revenue"].tolist() == [25.0]
    beer = daily[(daily["level"] == "category") & (daily["category"] == "beer")]
    assert beer["receipts"].tolist() == [5]  # category_receipts, not 4 + 3
    assert (daily[daily["level"] == "product"]["receipts"] == [4, 3, 5]).all()

    days = [daily.assign(receipts=daily["receipts"] * (i + 1)) for i in range(5)]
    days[-1] = days[-1].assign(product_name=days[-1]["product_name"].replace("IPA", "Pale"))
    total = window_counts(days)
    assert total.set_index(["level", "category"]).loc[("category", "beer"), "receipts"] == 75
    assert total.set_index(["level", "category"]).loc[("group", None), "revenue"] == 125.0
    # Names come from the latest day; the same days read from Parquet files sum the same.
    assert set(total["product_name"].dropna()) == {"Lager", "Pale", "Crisps"}
    for i, frame in enumerate(days[:3]):
        write_partition(tmp_path, AFFINITY, FIRST_DAY + dt.timedelta(days=i), frame, {})
    files = [path for _, path in partition_files(tmp_path, AFFINITY, FIRST_DAY, LAST_DAY)]
    assert len(files) == 3
    order = ["level", "category", "product_id"]
    pd.testing.assert_frame_equal(
        window_counts([*files, *days[3:]]).sort_values(order, ignore_index=True),
        total.sort_values(order, ignore_index=True))
    assert window_counts([]).empty


def test_month_recovers_the_planted_affinities(month):
    recs = read_partition(month.options.output_root, RECOMMENDATIONS, LAST_DAY)
    assert recs["window_days"].eq(28).all()
    assert recs["window_start"].eq(FIRST_DAY).all()
    chain = recs[recs["scope"] == "chain"]
    top = chain[(chain["level"] == "category") & (chain["rank"] == 1)].set_index("age_group")
    for group, planted in PLANTED_TOP.items():
        assert top.loc[group, "category"] in planted, (group, top.loc[group, "category"])
    products = chain[(chain["level"] == "product") & (chain["rank"] == 1)].set_index(
        "age_group")
    assert products.loc["18-24", "category"] == "energy drinks"
    assert products.loc["65+", "category"] == "newspapers"
    assert products.loc["25-34", "category"] == "baby"
    # Every store's own list finds the same strongest signals.
    stores = recs[(recs["scope"] == "store") & (recs["level"] == "category")
                  & (recs["rank"] == 1)]
    assert set(stores.loc[stores["age_group"] == "65+", "category"]) == {"newspapers"}
    assert set(stores.loc[stores["age_group"] == "25-34", "category"]) == {"baby"}


def test_month_noise_never_tops_a_list(month):
    recs = read_partition(month.options.output_root, RECOMMENDATIONS, LAST_DAY)
    assert NOISE_NAME not in set(recs["product_name"].dropna())  # 6 receipts < min support
    # Even with the support rule relaxed, the conservative bound keeps it off the top,
    # although no product has a bigger raw lift.
    days = [frame for _, frame in iter_partitions(month.options.restricted_root, AFFINITY,
                                                  FIRST_DAY, LAST_DAY)]
    lenient = recommendations(window_counts(days), min_cell=1, min_support=1,
                              **{**WINDOW, "window_end": LAST_DAY})
    young = lenient[(lenient["scope"] == "chain") & (lenient["level"] == "product")
                    & (lenient["age_group"] == "18-24")].set_index("product_name")
    assert young["lift"].idxmax() == NOISE_NAME
    assert young.loc[NOISE_NAME, "receipts"] == 5
    assert young.loc[NOISE_NAME, "rank"] > 3
    assert young.index[0].startswith("Energy drink")


def test_month_small_cells_are_suppressed_and_marketing_has_no_ids(month):
    marketing = month.options.output_root
    assert {p.name for p in marketing.iterdir() if not p.name.startswith("_")} == {
        SALES, RECOMMENDATIONS, AGE_MIX}
    sales = read_partition(marketing, SALES, LAST_DAY)
    recs = read_partition(marketing, RECOMMENDATIONS, LAST_DAY)
    for table in (sales, recs):
        assert not IDS & set(table.columns)
    assert recs["receipts"].min() >= MIN_CELL and recs["group_receipts"].min() >= MIN_CELL

    # Independent count of the last day's cells from the database and the planted estimates.
    engine = make_engine(month.db_url)
    lines = purchase_lines_for_day(engine, LAST_DAY)
    engine.dispose()
    estimates = month.estimates[month.estimates["day"] == LAST_DAY]
    joined = lines.merge(estimates[["receipt_id", "age_group"]], on="receipt_id", how="left")
    joined["age_group"] = joined["age_group"].astype(object).fillna("unknown")
    expected = joined.groupby(["store_id", "age_group", "category"])["receipt_id"].nunique()
    got = sales.set_index(["store_id", "age_group", "category"]).sort_index()
    expected = expected.reindex(got.index)
    assert expected.notna().all() and len(expected) == len(got)
    assert (got["suppressed"] == (expected < MIN_CELL)).all()
    assert got["suppressed"].any() and (~got["suppressed"]).any()
    assert got.loc[got["suppressed"], ["receipts", "items", "revenue"]].isna().all().all()
    shown = ~got["suppressed"]
    assert (got.loc[shown, "receipts"] == expected[shown]).all()


def test_a_window_with_days_written_before_the_estimates_ranks_as_before(tmp_path):
    """Earlier partitions have no est_ columns: they read as nulls, a window estimate needs
    every day's, and the list falls back to the observed lift instead of failing."""
    old = _shop().drop(columns=["est_receipts", "est_var"])
    write_partition(tmp_path, AFFINITY, FIRST_DAY, old, {})
    today = _shop().assign(est_receipts=10.0, est_var=1.0)
    [(_, path)] = partition_files(tmp_path, AFFINITY, FIRST_DAY, FIRST_DAY)
    total = window_counts([path, today])
    assert total["est_receipts"].isna().all()
    recs = recommendations(total, min_cell=5, min_support=5, **WINDOW)
    assert recs["est_lift"].isna().all()
    plain = recommendations(_shop(), min_cell=5, min_support=5, **WINDOW)
    assert recs["category"].tolist() == plain["category"].tolist()
    # Two days that both have them sum.
    both = window_counts([today, today])
    assert set(both["est_receipts"].dropna()) == {20.0}
