"""Challenge 25 compliance: the model-error method, the planted month (exactly the planted
under-age alcohol sales are flagged), per-cashier summaries, retention; SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from analytics.age_groups import assign_age_groups
from analytics.compliance import (
    SIGMA_PER_MAE,
    ErrorBands,
    ModelCardError,
    compliance_rows,
    compliance_summary,
    flag_marks,
    p_at_least,
)
from analytics.config import NightConfig
from analytics.day_tables import (
    COMPLIANCE,
    COMPLIANCE_SALES,
    COMPLIANCE_SUMMARY,
    purge_compliance,
    write_day_tables,
)
from analytics.parquet import partition_days, read_partition, read_range, write_partition
from demo.purchases import generate_day
from sql.engine import make_engine
from sql.queries import create_schema
from tests.month import BINS, CARD, FIRST_DAY, LAST_DAY, day_tables, restricted_receipts

# The generated month (`month`, ~30 s to build) is built once, by one worker.
pytestmark = pytest.mark.xdist_group("month")


def test_error_bands_from_the_card():
    bands = ErrorBands.from_card(CARD)
    labels, mae = bands.lookup(pd.Series([10.0, 15.9, 24.99, 30.0, 70.0, np.nan]))
    assert labels.tolist() == ["0-12", "13-17", "18-24", "overall", "overall", "overall"]
    np.testing.assert_allclose(mae, [3.0, 4.0, 5.0, 6.0, 6.0, 6.0])
    no_bands = ErrorBands.from_card({"metrics": {"val_mae": 7.5}})
    assert no_bands.lookup(pd.Series([20.0]))[1].tolist() == [7.5]
    with pytest.raises(ModelCardError):
        ErrorBands.from_card({"metrics": {"by_band": {"18-24": {"mae": None}}}})
    with pytest.raises(ModelCardError):
        ErrorBands.from_card({"version": "x"})


def test_probability_of_being_old_enough():
    p = p_at_least(25, pd.Series([25.0, 20.0, 12.0]), pd.Series([4.0, 4.0, 4.0]))
    sigma = 4.0 * SIGMA_PER_MAE
    assert sigma == pytest.approx(5.013, abs=1e-3)
    assert p.iloc[0] == pytest.approx(0.5)
    assert p.iloc[1] == pytest.approx(0.5 * math.erfc(5 / sigma / math.sqrt(2)))
    assert p.iloc[1] == pytest.approx(0.159, abs=1e-3)
    assert p.iloc[2] < 0.01


def test_rows_take_the_models_own_probability_where_there_is_one():
    """P(true age >= threshold) is 1 - the model's P(under) where the estimate has one, and
    the band-MAE Gaussian only where it has none; the operating point is recorded."""
    flagged = pd.DataFrame({"receipt_id": [1, 2], "store_id": [1, 1], "cashier_id": [7, 7],
                            "ts": pd.Timestamp("2026-03-14 12:00"), "age": [23.0, 23.0],
                            "p_under": [0.8, np.nan], "id_checked": [None, True]})
    rows = compliance_rows(flagged, {1: "Northgate"}, ErrorBands.from_card(CARD), 25.0, 0.3)
    assert rows["p_at_least_threshold"].iloc[0] == pytest.approx(0.2)
    gaussian = p_at_least(25.0, pd.Series([23.0]), pd.Series([5.0])).iloc[0]
    assert rows["p_at_least_threshold"].iloc[1] == pytest.approx(gaussian)
    assert rows["flag_probability"].tolist() == [0.3, 0.3]
    summary = compliance_summary(
        rows, pd.DataFrame({"store_id": [1], "store_name": ["Northgate"], "cashier_id": [7],
                            "alcohol_sales": [5], "with_age": [5], "flagged": [2]}),
        window_start=dt.date(2026, 3, 14), window_end=dt.date(2026, 3, 14), window_days=1,
        challenge_age=25.0)
    assert summary["expected_false_flags"].iloc[0] == pytest.approx(0.2 + gaussian)


def test_summary_per_store_and_cashier():
    flagged = pd.DataFrame({
        "store_id": [1, 1, 1, 2], "cashier_id": [101, 101, 101, 201],
        "p_at_least_threshold": [0.1, 0.2, 0.3, 0.5],
        "id_checked": pd.array([True, False, None, False], dtype="boolean")})
    sales = pd.DataFrame({"store_id": [1, 1, 2], "store_name": ["N", "N", "R"],
                          "cashier_id": [101, 102, 201], "alcohol_sales": [10, 5, 4],
                          "with_age": [9, 5, 4], "flagged": [3, 0, 1]})
    summary = compliance_summary(flagged, sales, window_start=FIRST_DAY, window_end=LAST_DAY,
                                 window_days=28, challenge_age=25)
    a = summary[(summary["level"] == "cashier") & (summary["cashier_id"] == 101)].iloc[0]
    assert (a["alcohol_sales"], a["flagged"]) == (10, 3)
    assert a["flagged_rate"] == pytest.approx(0.3)
    assert a["expected_false_flags"] == pytest.approx(0.6)
    assert a["expected_false_flag_rate"] == pytest.approx(0.2)
    assert (a["flagged_id_checked"], a["flagged_no_id_check"],
            a["flagged_check_not_recorded"]) == (1, 1, 1)
    assert a["expected_false_flags_no_id_check"] == pytest.approx(0.2)
    quiet = summary[(summary["level"] == "cashier") & (summary["cashier_id"] == 102)].iloc[0]
    assert quiet["flagged"] == 0 and quiet["expected_false_flags"] == 0
    assert pd.isna(quiet["expected_false_flag_rate"])
    store = summary[summary["level"] == "store"].set_index("store_id")
    assert store.loc[1, "alcohol_sales"] == 15 and store.loc[1, "flagged"] == 3
    assert store["cashier_id"].isna().all() and store.loc[2, "store_name"] == "R"


def test_flag_marks_sum_files_and_frames_alike(tmp_path):
    days = [pd.DataFrame({
        "store_id": [1, 1, 2], "cashier_id": [101, 102, 201],
        "p_at_least_threshold": [0.1 * (i + 1), 0.2, 0.4],
        "id_checked": pd.array(checks, dtype="boolean"), "age": [20.0, 21.0, 22.0]})
        for i, checks in enumerate([[True, False, None], [None, None, None], [False] * 3])]
    for i, frame in enumerate(days[:2]):  # the second day's id_checked is all null
        write_partition(tmp_path, COMPLIANCE, FIRST_DAY + dt.timedelta(days=i), frame, {})
    files = sorted(tmp_path.glob(f"{COMPLIANCE}/*/*.parquet"))
    marks = flag_marks([*files, days[2]]).set_index(["store_id", "cashier_id"]).sort_index()
    assert marks.loc[(1, 101)].to_dict() == pytest.approx({
        "expected_false_flags": 0.1 + 0.2 + 0.3, "flagged_id_checked": 1,
        "flagged_no_id_check": 1, "flagged_check_not_recorded": 1,
        "expected_false_flags_no_id_check": 0.3})
    assert marks.loc[(2, 201), "flagged_check_not_recorded"] == 2
    together = flag_marks([pd.concat(days, ignore_index=True)])
    pd.testing.assert_frame_equal(marks.reset_index(), together.sort_values(
        ["store_id", "cashier_id"], ignore_index=True))
    assert flag_marks([]).empty


def test_month_flags_exactly_the_planted_sales(month):
    engine = make_engine(month.db_url)
    alcohol = restricted_receipts(engine)
    engine.dispose()
    under = month.estimates[month.estimates["age"] < 25]
    expected = set(under["receipt_id"]) & alcohol
    fooled = month.estimates.merge(month.shoppers, on="receipt_id")
    fooled = set(fooled.loc[(fooled["true_age"] >= 30) & (fooled["age"] < 25), "receipt_id"])
    assert fooled & alcohol and len(expected) > 100  # the plant worked

    rows = read_range(month.options.restricted_root, COMPLIANCE, FIRST_DAY, LAST_DAY)
    assert set(rows["receipt_id"]) == expected and rows["receipt_id"].is_unique
    assert (rows["age"] < 25).all()
    teens = rows[rows["age"].between(13, 17.99)]
    assert (teens["error_band"] == "13-17").all() and (teens["model_mae"] == 4.0).all()
    young = rows[rows["age"].between(18, 24.99)]
    assert (young["model_mae"] == 5.0).all()
    # An estimate of 22 with MAE 5: the shopper is 25+ with probability about 0.32.
    p22 = rows.loc[rows["age"] == 22.0, "p_at_least_threshold"]
    assert p22.empty or p22.round(2).eq(0.32).all()
    assert not {"photo_id", "path"} & set(rows.columns)


def test_month_summary_matches_an_independent_count(month):
    summary = read_partition(month.options.restricted_root, COMPLIANCE_SUMMARY, LAST_DAY)
    rows = read_range(month.options.restricted_root, COMPLIANCE, FIRST_DAY, LAST_DAY)
    engine = make_engine(month.db_url)
    receipts = pd.read_sql("select receipt_id, store_id, cashier_id from receipts", engine)
    alcohol = restricted_receipts(engine)
    engine.dispose()
    sold = receipts[receipts["receipt_id"].isin(alcohol)].groupby("cashier_id").size()
    cashiers = summary[summary["level"] == "cashier"].set_index("cashier_id")
    assert (cashiers["alcohol_sales"] == sold.reindex(cashiers.index)).all()
    flagged = rows.groupby("cashier_id").agg(n=("receipt_id", "size"),
                                             p=("p_at_least_threshold", "sum"))
    flagged = flagged.reindex(cashiers.index, fill_value=0)
    assert (cashiers["flagged"] == flagged["n"]).all()
    np.testing.assert_allclose(cashiers["expected_false_flags"], flagged["p"])
    split = cashiers[["flagged_id_checked", "flagged_no_id_check",
                      "flagged_check_not_recorded"]].sum(axis=1)
    assert (split == cashiers["flagged"]).all()
    stores = summary[summary["level"] == "store"].set_index("store_id")
    assert (stores["flagged"] == cashiers.groupby("store_id")["flagged"].sum()).all()
    assert summary["window_days"].eq(28).all()


def test_compliance_on_both_databases_and_retention(db_url, tmp_path):
    engine = make_engine(db_url)
    create_schema(engine)
    day = dt.date(2026, 6, 1)
    shoppers = generate_day(engine, day, stores=2, receipts_per_store=150,
                            shopper_ages=np.linspace(14, 70, 300), seed=4)
    estimates = shoppers.assign(age=shoppers["true_age"].round(1), photo_id=1, face_count=1)
    estimates["age_group"] = assign_age_groups(estimates["age"], BINS)
    options = NightConfig(tmp_path / "m", tmp_path / "r", min_cell=5,
                          today=day + dt.timedelta(days=1), compliance_retention_days=30)
    tables = day_tables(engine, day, estimates, CARD, options)
    alcohol = restricted_receipts(engine, day)
    expected = set(estimates.loc[estimates["age"] < 25, "receipt_id"]) & alcohol
    assert set(tables.restricted[COMPLIANCE]["receipt_id"]) == expected and expected
    assert tables.restricted[COMPLIANCE_SALES]["alcohol_sales"].sum() == len(alcohol)
    assert tables.counts["flagged"] == len(expected)

    # Retention: older compliance partitions go, newer ones and other tables stay.
    old = tables.restricted[COMPLIANCE].head(3)
    for back in (31, 40, 29):
        write_partition(options.restricted_root, COMPLIANCE, day - dt.timedelta(days=back),
                        old, {})
    write_partition(options.restricted_root, COMPLIANCE_SUMMARY, day - dt.timedelta(days=45),
                    tables.restricted[COMPLIANCE_SUMMARY], {})
    write_day_tables(tables, day, options, {"run_id": "t"}, "test")
    assert purge_compliance(options) == {"compliance_partitions_deleted": 3,
                                         "compliance_rows_deleted": 6}
    assert partition_days(options.restricted_root, COMPLIANCE) == [
        day - dt.timedelta(days=29), day]
    assert partition_days(options.restricted_root, COMPLIANCE_SUMMARY) == [day]
    assert purge_compliance(options)["compliance_partitions_deleted"] == 0
    assert not any(p.name.startswith(".") for p in (options.restricted_root / COMPLIANCE)
                   .iterdir())

    # A day already past retention (a rescore of old history) gets no compliance tables.
    late = NightConfig(tmp_path / "m2", tmp_path / "r2", min_cell=5,
                       today=day + dt.timedelta(days=60), compliance_retention_days=30)
    skipped = day_tables(engine, day, estimates, CARD, late)
    assert COMPLIANCE not in skipped.restricted and skipped.counts["compliance_skipped"] == 1
    engine.dispose()
