"""The one end-to-end run of the real nightly command (model, detector, database) for the
marketing and compliance outputs: every table lands under the right root, compliance
retention runs and the summary says what it deleted. (The numbers themselves are tested
without the model in test_day_aggregates, test_recommendations and test_compliance.)"""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import sqlalchemy as sa
from click.testing import CliRunner

from analytics.parquet import write_partition
from jobs.cli import cli
from tests.shop import DAY, fill_shop

ANCIENT = dt.date(1990, 1, 1)  # older than any retention period below, whatever the clock


def test_nightly_writes_marketing_and_restricted_tables(sqlite_url, tmp_path,
                                                        tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=30)
    restricted = tmp_path / "restricted"
    stale = pd.DataFrame({"receipt_id": [1, 2], "age": [20.0, 21.0]})
    write_partition(restricted, "compliance", ANCIENT, stale, {})
    write_partition(restricted, "compliance_summary", ANCIENT, stale, {})

    result = CliRunner().invoke(cli, [
        "--db-url", sqlite_url, "--photo-root", str(tmp_path / "photos"),
        "--model", str(tiny_model_path), "--output-root", str(tmp_path / "marketing"),
        "--restricted-root", str(restricted), "--lock-dir", str(tmp_path / "locks"),
        "--min-cell", "2", "--challenge-age", "200", "--window-days", "7",
        "--compliance-retention-days", "10000",
        "nightly", "--date", DAY.isoformat()], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "retention deleted 2 compliance partition(s) (2 flagged rows)" in result.output

    def tables(root):
        return {p.name for p in root.iterdir() if not p.name.startswith("_")}

    assert tables(tmp_path / "marketing") == {"sales_by_age_group", "recommendations",
                                              "age_mix"}
    assert tables(restricted) == {"age_estimates", "affinity_counts", "compliance",
                                  "compliance_sales", "compliance_summary", "age_histograms",
                                  "camera_quality"}
    # The corrected estimates ride beside the observed counts and are hidden with them.
    marketing = pd.read_parquet(tmp_path / "marketing" / "sales_by_age_group" / f"dt={DAY}")
    shown = marketing.loc[~marketing["suppressed"]]
    hidden = marketing.loc[marketing["suppressed"]]
    assert shown["est_receipts"].notna().all() and hidden["est_receipts"].isna().all()
    assert (shown["est_receipts_low"] <= shown["est_receipts"]).all()
    assert (shown["est_receipts"] <= shown["est_receipts_high"]).all()
    mix = pd.read_parquet(tmp_path / "marketing" / "age_mix" / f"dt={DAY}")
    assert set(mix["scope"]) == {"store", "chain"}
    # Photo quality is per shopper's photo: restricted only, never in a marketing table.
    for name in tables(tmp_path / "marketing"):
        frame = pd.read_parquet(tmp_path / "marketing" / name / f"dt={DAY}")
        assert not {"sharpness", "exposure_mean", "exposure_std"} & set(frame.columns)
    estimates = pd.read_parquet(restricted / "age_estimates" / f"dt={DAY}")
    aged = estimates["age"].notna()
    assert estimates.loc[aged, "sharpness"].notna().all()
    assert estimates.loc[~aged, "sharpness"].isna().all()
    cameras = pd.read_parquet(restricted / "camera_quality" / f"dt={DAY}")
    assert cameras["store_id"].nunique() == len(cameras) == 2
    assert cameras["photos"].sum() == 30 and (cameras["aged"] <= cameras["photos"]).all()
    assert not (restricted / "compliance" / f"dt={ANCIENT}").exists()

    # --challenge-age 200 flags every age-restricted sale that has an age estimate.
    flagged = pd.read_parquet(restricted / "compliance" / f"dt={DAY}")
    sales = pd.read_parquet(restricted / "compliance_sales" / f"dt={DAY}")
    assert len(flagged) == sales["with_age"].sum() == sales["flagged"].sum() > 0
    assert set(flagged["challenge_age"]) == {200.0}
    assert set(flagged["model_mae"]) == {99.0}  # the tiny model's card: val_mae only

    marker = json.loads((tmp_path / "marketing" / "_runs" / f"dt={DAY}" /
                         "SUCCESS.json").read_text())
    assert marker["flagged"] == len(flagged) and marker["window_days"] == 7  # numbers, not text
    assert marker["challenge_age"] == 200.0 and isinstance(marker["min_cell"], int)
    assert marker["compliance_partitions_deleted"] == 2
    engine = sa.create_engine(sqlite_url)
    counts = json.loads(pd.read_sql("select counts from runs", engine)["counts"][0])
    engine.dispose()
    assert counts["recommendations"] == marker["recommendations"]
    assert counts["receipts"] == 30
