"""The nightly job end to end through the CLI, on a real SQLite file and a real PostgreSQL:
generated purchases, generated checkout photos (every bad kind included), Parquet checked
against an independent DuckDB computation over the same rows."""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import cli
from tests.photos import DECODABLE
from tests.shop import DAY, fill_shop

SIZE = 32


def _invoke(db_url, tmp_path, model, *args):
    base = ["--db-url", db_url, "--photo-root", str(tmp_path / "photos"),
            "--model", str(model), "--output-root", str(tmp_path / "marketing"),
            "--restricted-root", str(tmp_path / "restricted"),
            "--lock-dir", str(tmp_path / "locks"), "--min-cell", "3"]
    return CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)


def test_nightly_end_to_end(db_url, tmp_path, tiny_model_path):
    expected = fill_shop(db_url, tmp_path / "photos")
    result = _invoke(db_url, tmp_path, tiny_model_path, "nightly", "--date", DAY.isoformat())
    assert result.exit_code == 0, result.output

    # Every photo has the outcome its kind calls for; bad ones are quarantined with a reason.
    engine = sa.create_engine(db_url)
    quarantine = pd.read_sql("select path, reason from quarantine", engine)
    got = dict(zip(quarantine["path"], quarantine["reason"]))
    for path, outcome in expected.items():
        if outcome in DECODABLE:
            assert path not in got, f"{path} should have been scored"
        else:
            assert got.get(path) == outcome, f"{path}: {got.get(path)} != {outcome}"

    estimates = pd.read_parquet(tmp_path / "restricted" / "age_estimates" / f"dt={DAY}")
    photos = pd.read_sql("select photo_id, path from checkout_photos", engine)
    by_path = estimates.merge(photos, on="photo_id").set_index("path")
    for path, outcome in expected.items():
        if outcome == "ok":
            assert by_path.loc[path, "face_count"] >= 1 and by_path.loc[path, "age"] >= 0, path
    assert set(estimates["model_version"]) == {"test-tiny"}
    # How sure each estimate is, and ages that read back as written (float64, 0.1 year).
    aged = estimates.dropna(subset=["age"])
    assert estimates["age"].dtype == "float64"
    assert [str(a) for a in aged["age"]] == [f"{a:.1f}" for a in aged["age"]]
    assert set(aged["status"]) <= {"ok", "several_faces", "low_confidence"}
    assert aged["face_confidence"].between(0, 1).all() and (aged["face_px"] > 40).all()
    assert set(estimates.loc[estimates["age"].isna(), "status"]) <= {"no_face", "quarantined"}
    assert "  photos: ok " in result.output

    # Marketing numbers against an independent computation over the same database rows.
    lines = pd.read_sql(
        "select l.receipt_id, r.store_id, p.category, l.quantity, l.amount "
        "from receipt_lines l join receipts r using (receipt_id) "
        "join products p using (product_id)", engine)
    lines["amount"] = lines["amount"].astype(float)
    expect = duckdb.sql("""
        select l.store_id, coalesce(e.age_group, 'unknown') as age_group, l.category,
               count(distinct l.receipt_id) as receipts, sum(l.quantity) as items,
               sum(l.amount) as revenue
        from lines l left join estimates e using (receipt_id)
        group by all""").df()
    sales = pd.read_parquet(tmp_path / "marketing" / "sales_by_age_group" / f"dt={DAY}")
    assert not {"receipt_id", "photo_id", "cashier_id", "age"} & set(sales.columns)
    merged = sales.astype({"age_group": str}).merge(
        expect, on=["store_id", "age_group", "category"], suffixes=("", "_expected"))
    assert len(merged) == len(expect) == len(sales)
    shown = merged[~merged["suppressed"]]
    assert (shown["receipts"] == shown["receipts_expected"]).all()
    assert (shown["items"] == shown["items_expected"]).all()
    np.testing.assert_allclose(shown["revenue"], shown["revenue_expected"], rtol=1e-9)
    hidden = merged[merged["suppressed"]]
    assert (hidden["receipts_expected"] < 3).all() and hidden["revenue"].isna().all()
    assert (shown["receipts_expected"] >= 3).all()

    meta = pq.read_schema(next((tmp_path / "marketing" / "sales_by_age_group").rglob(
        "*.parquet"))).metadata
    assert b"test-tiny" in meta[b"ageseg"]
    runs = pd.read_sql("select status, model_version from runs", engine)
    assert runs.to_dict("records") == [{"status": "ok", "model_version": "test-tiny"}]
    engine.dispose()


def test_rerun_replaces_the_day(sqlite_url, tmp_path, tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    for _ in range(2):
        assert _invoke(sqlite_url, tmp_path, tiny_model_path, "nightly", "--date",
                       DAY.isoformat()).exit_code == 0
    for root, table in (("marketing", "sales_by_age_group"), ("restricted", "age_estimates")):
        files = list((tmp_path / root / table).rglob("*"))
        assert [f.name for f in files if f.is_file()] == ["part-0.parquet"]
    engine = sa.create_engine(sqlite_url)
    assert pd.read_sql("select count(*) n from runs where status='ok'", engine)["n"][0] == 2
    quarantined = pd.read_sql("select run_id from quarantine", engine)["run_id"]
    assert quarantined.nunique() == 1  # the second run replaced the first run's records


@pytest.mark.parametrize("table", ["affinity_counts", "compliance_sales"])
def test_damaged_earlier_partition_is_one_line_and_loses_nothing(
        sqlite_url, tmp_path, tiny_model_path, table):
    """A file of the trailing window cut short (read by DuckDB or by pyarrow, by table):
    exit 1 with a line naming it, and the day's previous outputs stay as they were."""
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    args = ("nightly", "--date", DAY.isoformat())
    assert _invoke(sqlite_url, tmp_path, tiny_model_path, *args).exit_code == 0
    good = tmp_path / "restricted" / table / f"dt={DAY.isoformat()}" / "part-0.parquet"
    earlier = tmp_path / "restricted" / table / f"dt={DAY - dt.timedelta(days=3)}"
    earlier.mkdir()
    (earlier / "part-0.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    before = {p: p.read_bytes() for p in tmp_path.glob("*/*/dt=*/part-0.parquet")}

    result = _invoke(sqlite_url, tmp_path, tiny_model_path, *args)
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith("Error: an earlier day of the trailing window cannot be read")
    assert str(DAY - dt.timedelta(days=3)) in message and "Traceback" not in result.output
    assert {p: p.read_bytes() for p in tmp_path.glob("*/*/dt=*/part-0.parquet")} == before


def test_second_run_exits_75_while_locked(sqlite_url, tmp_path, tiny_model_path):
    from jobs.lock import run_lock

    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    with run_lock(tmp_path / "locks"):
        result = _invoke(sqlite_url, tmp_path, tiny_model_path, "nightly", "--date",
                         DAY.isoformat())
    assert result.exit_code == 75
    assert "another run" in result.output
    assert not (tmp_path / "marketing").exists()


def test_bad_age_bins_fail_before_any_work(sqlite_url, tmp_path, tiny_model_path):
    result = _invoke(sqlite_url, tmp_path, tiny_model_path, "--age-bins", "0-17,15-30,31+",
                     "nightly", "--date", DAY.isoformat())
    assert result.exit_code == 2 and "age-bins" in result.output
    assert not (tmp_path / "locks").exists()


def test_unreachable_database_is_one_line_without_password(tmp_path, tiny_model_path):
    url = "postgresql+psycopg://shop:s3cret-pw@127.0.0.1:1/shop"
    (tmp_path / "photos").mkdir()  # the photo root is checked first, before the database
    result = _invoke(url, tmp_path, tiny_model_path, "nightly", "--date", DAY.isoformat())
    assert result.exit_code == 69
    assert "s3cret-pw" not in result.output
    assert "database unavailable" in result.output


def test_untrained_model_is_refused(sqlite_url, tmp_path):
    from models.build import build_model
    from models.persist import save_model

    _, age_model = build_model(SIZE)
    path = save_model(age_model, tmp_path / "untrained.ageseg", {"version": "raw"})
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    result = _invoke(sqlite_url, tmp_path, path, "nightly", "--date", DAY.isoformat())
    assert result.exit_code == 1 and "untrained" in result.output
    # refused before any photo is scored: nothing written, as for the other refusals
    assert not (tmp_path / "marketing").exists() and not (tmp_path / "restricted").exists()


def test_dry_run_writes_nothing(sqlite_url, tmp_path, tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    result = _invoke(sqlite_url, tmp_path, tiny_model_path, "nightly", "--date",
                     DAY.isoformat(), "--dry-run")
    assert result.exit_code == 0 and "would score 26 photos" in result.output
    assert not (tmp_path / "marketing").exists()


def test_rescore_runs_each_day(sqlite_url, tmp_path, tiny_model_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    span = ("rescore", "--from", (DAY - dt.timedelta(days=1)).isoformat(), "--to",
            DAY.isoformat())
    refused = _invoke(sqlite_url, tmp_path, tiny_model_path, *span)
    assert refused.exit_code == 65 and "--allow-empty" in refused.output  # the day before
    assert not [p for p in tmp_path.glob("*/*/dt=*/*") if p.is_file()]  # nothing written
    result = _invoke(sqlite_url, tmp_path, tiny_model_path, *span, "--allow-empty")
    assert result.exit_code == 0, result.output
    days = sorted(p.name for p in (tmp_path / "marketing" / "sales_by_age_group").iterdir())
    assert days == [f"dt={DAY - dt.timedelta(days=1)}", f"dt={DAY}"]
    before = pd.read_parquet(tmp_path / "marketing" / "sales_by_age_group" /
                             f"dt={DAY - dt.timedelta(days=1)}")
    assert before.empty  # allowed, a day with no receipts gets its (empty) partition


def test_lock_holder_note_of_an_exited_run_is_not_shown_as_the_holder(tmp_path):
    """Between taking the lock and writing its note, a new holder leaves the old note in the
    file; a run that finds the lock taken must not name that dead process as the holder."""
    import os
    import subprocess
    import threading
    import time

    from jobs.lock import read_holder

    gone = subprocess.Popen(["true"])
    gone.wait()
    path = tmp_path / "ageseg.lock"
    path.write_text(f"pid {gone.pid}, started 2026-11-28 02:15:00 UTC, nightly 2026-11-27\n")
    fd = os.open(path, os.O_RDWR)
    try:
        assert read_holder(fd).startswith(f"pid unknown; the file still names the exited run: "
                                      f"pid {gone.pid},")
        fresh = f"pid {os.getpid()}, started 2026-11-29 02:15:00 UTC, nightly 2026-11-28"

        def holder_writes_its_note() -> None:
            time.sleep(0.2)
            os.pwrite(fd, fresh.encode().ljust(80) + b"\n", 0)

        writer = threading.Thread(target=holder_writes_its_note)
        writer.start()
        assert read_holder(fd) == fresh
        writer.join()
    finally:
        os.close(fd)
