"""What analysts run: `ageseg publish` (twice leaves one copy, SQLite and PostgreSQL),
`ageseg report`, and the README's DuckDB, pandas and SQL examples, run as written against
the planted month's tables (tests/month.py ends on the README's day)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from PIL import Image

from analytics.day_tables import RECOMMENDATIONS, SALES
from analytics.parquet import read_partition
from jobs.cli import cli
from tests.month import FIRST_DAY, LAST_DAY

# The generated month (`month`, ~30 s to build) is built once, by one worker.
pytestmark = pytest.mark.xdist_group("month")

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
DEMO_MARKETING = "var/demo/out/marketing"
DEMO_RESTRICTED = "var/demo/out/restricted"


def _blocks(language: str, needle: str) -> list[str]:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    return [b for b in blocks if needle in b]


def _paths(text: str, month) -> str:
    return (text.replace(DEMO_MARKETING, str(month.options.output_root))
            .replace(DEMO_RESTRICTED, str(month.options.restricted_root)))


def _invoke(month, db_url: str, *args: str):
    base = ["--db-url", db_url, "--output-root", str(month.options.output_root)]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_publish_twice_leaves_one_copy(month, db_url):
    assert LAST_DAY.isoformat() == "2026-11-28"  # the README's examples use this day
    for _ in range(2):
        result = _invoke(month, db_url, "publish", "--date", LAST_DAY.isoformat())
        assert result.exit_code == 0, result.output
    previous = LAST_DAY - dt.timedelta(days=1)
    assert _invoke(month, db_url, "publish", "--date", previous.isoformat()).exit_code == 0

    sales = read_partition(month.options.output_root, SALES, LAST_DAY)
    recs = read_partition(month.options.output_root, RECOMMENDATIONS, LAST_DAY)
    engine = sa.create_engine(db_url)
    counts = pd.read_sql("select day, count(*) as n from mkt_sales_by_age_group group by day",
                         engine)
    per_day = {str(d)[:10]: n for d, n in zip(counts["day"], counts["n"], strict=True)}
    assert per_day[LAST_DAY.isoformat()] == len(sales) and len(per_day) == 2
    got = pd.read_sql(sa.text("select * from mkt_recommendations where day = :d"), engine,
                      params={"d": LAST_DAY})
    assert len(got) == len(recs) and got["id"].is_unique
    top = got[(got["scope"] == "chain") & (got["rank"] == 1) & (got["level"] == "category")]
    expected = recs[(recs["scope"] == "chain") & (recs["rank"] == 1)
                    & (recs["level"] == "category")]
    assert sorted(top["category"]) == sorted(expected["category"])
    hidden = pd.read_sql("select * from mkt_sales_by_age_group where suppressed", engine)
    estimates = ["est_receipts", "est_receipts_low", "est_receipts_high", "est_revenue"]
    assert len(hidden) and hidden[["receipts", "items", "revenue", *estimates]].isna().all().all()
    # The corrected estimates travel with the observed counts, and the age mix beside them.
    shown = pd.read_sql(sa.text("select * from mkt_sales_by_age_group where not suppressed "
                                "and day = :d"), engine, params={"d": LAST_DAY})
    assert shown[estimates].notna().all().all()
    assert (shown["est_receipts_low"] <= shown["est_receipts"] + 1e-9).all()
    assert shown["est_receipts"].sum() == pytest.approx(
        sales.loc[~sales["suppressed"], "est_receipts"].sum())
    mix = pd.read_sql(sa.text("select * from mkt_age_mix where day = :d"), engine,
                      params={"d": LAST_DAY})
    assert set(mix["scope"]) == {"store", "chain"} and mix["est_share"].notna().any()

    # The README's SQL runs as written on the published tables.
    for sql in _blocks("sql", "mkt_"):
        rows = pd.read_sql(sa.text(sql), engine)
        assert len(rows) > 0, sql
    engine.dispose()


def test_publish_without_the_day_fails_cleanly(month, sqlite_url):
    result = _invoke(month, sqlite_url, "publish", "--date", "2020-01-01")
    assert result.exit_code == 1 and "run `ageseg nightly --date 2020-01-01` first" in (
        result.output)


def test_report_writes_markdown_and_charts(month, tmp_path, sqlite_url):
    out = tmp_path / "report"
    result = _invoke(month, sqlite_url, "report", "--from", FIRST_DAY.isoformat(), "--to",
                     LAST_DAY.isoformat(), "--out", str(out))
    assert result.exit_code == 0, result.output
    text = (out / "report.md").read_text()
    for heading in ("## Age-group mix per store and day", "## Top categories per age group",
                    "## Week over week", "## Who shops, corrected for the model's error"):
        assert heading in text
    for chart in ("age_mix.png", "top_categories.png", "week_over_week.png",
                  "corrected_mix.png"):
        assert f"]({chart})" in text
        with Image.open(out / chart) as image:
            assert image.format == "PNG" and image.width >= 600
    assert "| 65+ | newspapers | 1 |" in text  # the planted top recommendation
    assert "| 2026-11-22 | 2026-11-28 | 7 | 18-24 |" in text  # the last full week
    assert not re.search(r"receipt_id|cashier|photo_id", text)

    empty = _invoke(month, sqlite_url, "report", "--from", "2020-01-01", "--to", "2020-01-31",
                    "--out", str(tmp_path / "none"))
    assert empty.exit_code == 1 and "no sales_by_age_group" in empty.output
    backwards = _invoke(month, sqlite_url, "report", "--from", "2026-11-28", "--to",
                        "2026-11-01")
    assert backwards.exit_code == 2


def test_readme_duckdb_and_pandas_examples_run_as_written(month, capsys):
    queries = _blocks("sql", "read_parquet")
    assert len(queries) >= 3
    for sql in queries:
        rows = duckdb.sql(_paths(sql, month)).df()
        assert len(rows) > 0, sql
    top = duckdb.sql(_paths(_blocks("sql", "recommendations/")[0], month)).df()
    assert top.loc[top["age_group"] == "65+", "category"].iloc[0] == "newspapers"
    for code in _blocks("python", "pd.read_parquet"):
        exec(compile(_paths(code, month), "README.md", "exec"), {})  # noqa: S102
    printed = capsys.readouterr().out
    assert "65+" in printed and "product_name" in printed and "lift_low" in printed


def test_report_claims_only_what_the_data_supports():
    """One day of data in a 28-day range, a recommendation whose conservative lift is under
    1, and suppressed cells: the title names the days with data, the "buys more" list leaves
    out what lift_low does not support, the shares say they are of the shown revenue, and
    the weekly chart's axis spans days, not years."""
    from analytics.report import render_markdown, report_data, week_axis_limits

    day = dt.date(2026, 11, 28)
    sales = pd.DataFrame({
        "dt": [day] * 3, "store_name": ["North"] * 3, "age_group": ["25-34", "65+", "65+"],
        "category": ["dairy", "newspapers", "wine"], "revenue": [40.0, 60.0, None],
        "suppressed": [False, False, True]})
    recs = pd.DataFrame({
        "dt": [day] * 2, "scope": ["chain"] * 2, "level": ["category"] * 2,
        "age_group": ["65+", "25-34"], "category": ["newspapers", "dairy"], "rank": [1, 1],
        "receipts": [40, 30], "lift": [2.5, 1.1], "lift_low": [1.8, 0.7]})
    data = report_data(sales, recs, day - dt.timedelta(days=27), day)
    text = render_markdown(data, {"mix": "m.png", "top": "t.png", "weekly": "w.png"})
    assert text.startswith(f"# What each age group buys: {day} to {day}\n")
    assert f"Asked for {day - dt.timedelta(days=27)} to {day}" in text
    assert "| 65+ | newspapers | 1 |" in text and "| 25-34 | dairy | 1 |" not in text
    assert "*shown* revenue" in text
    low, high = week_axis_limits(data.weekly["week_end"])
    assert (high - low).days <= 14 and low <= day <= high
