"""Parquet partitions: layout, metadata, atomic replacement, crashes, unwritable roots."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os

import duckdb
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from analytics import parquet
from analytics.parquet import (
    OutputError,
    PartitionNotFound,
    read_partition,
    read_partition_metadata,
    write_marker,
    write_partition,
)

DAY = dt.date(2024, 5, 17)
META = {"run_id": "r-1", "model_version": "resnet50-v1", "age_bins": "0-17,18+"}


def _table(revenue: float) -> pd.DataFrame:
    return pd.DataFrame({
        "store_id": [1, 1, 2],
        "age_group": ["0-17", "18+", "18+"],
        "receipts": pd.array([12, None, 40], dtype="Int64"),
        "revenue": pd.array([revenue, None, 99.5], dtype="Float64"),
        "suppressed": [False, True, False],
    })


def test_write_partition_layout_compression_and_round_trip(tmp_path):
    path = write_partition(tmp_path, "sales_by_age_group", DAY, _table(10.0), META)

    assert path == tmp_path / "sales_by_age_group" / "dt=2024-05-17" / "part-0.parquet"
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"
    back = read_partition(tmp_path, "sales_by_age_group", DAY)
    pd.testing.assert_frame_equal(back, _table(10.0))
    assert back["revenue"].isna().tolist() == [False, True, False]  # null, not NaN
    assert read_partition_metadata(tmp_path, "sales_by_age_group", DAY) == META
    raw = pq.read_schema(path).metadata[b"ageseg"]
    assert json.loads(raw) == META


def test_rewriting_a_day_leaves_one_file_with_the_new_content(tmp_path):
    write_partition(tmp_path, "t", DAY, _table(10.0), META)
    write_partition(tmp_path, "t", DAY, _table(20.0), {**META, "run_id": "r-2"})

    folder = tmp_path / "t" / "dt=2024-05-17"
    assert sorted(os.listdir(folder)) == ["part-0.parquet"]
    assert read_partition(tmp_path, "t", DAY)["revenue"].iloc[0] == 20.0
    assert read_partition_metadata(tmp_path, "t", DAY)["run_id"] == "r-2"


@pytest.mark.parametrize("failing", ["write_table", "replace"])
def test_crash_during_write_keeps_the_previous_file(tmp_path, monkeypatch, failing):
    old = write_partition(tmp_path, "t", DAY, _table(10.0), META)
    old_bytes = old.read_bytes()
    seen_temp = []
    real_write_table = pq.write_table

    def write_then_crash(table, where, **kwargs):
        real_write_table(table, where, **kwargs)  # a real, half-finished temp file exists ...
        seen_temp.extend(p.name for p in old.parent.iterdir() if p.name.startswith("."))
        raise RuntimeError("killed mid-write")  # ... when the process "dies"

    def replace_then_crash(src, dst):
        seen_temp.append(os.path.basename(src))
        raise RuntimeError("killed before rename")

    if failing == "write_table":
        monkeypatch.setattr(parquet.pq, "write_table", write_then_crash)
    else:
        monkeypatch.setattr(parquet.os, "replace", replace_then_crash)

    with pytest.raises(RuntimeError, match="killed"):
        write_partition(tmp_path, "t", DAY, _table(20.0), META)

    assert seen_temp and seen_temp[0].startswith(".part-0.parquet.")
    assert old.read_bytes() == old_bytes
    assert read_partition(tmp_path, "t", DAY)["revenue"].iloc[0] == 10.0
    assert sorted(os.listdir(old.parent)) == ["part-0.parquet"]  # its own temp is removed


def test_leftover_temp_files_are_ignored_by_readers_and_cleaned_next_time(tmp_path):
    write_partition(tmp_path, "t", DAY, _table(10.0), META)
    folder = tmp_path / "t" / "dt=2024-05-17"
    stale = folder / ".part-0.parquet.deadbeef.tmp"  # what a kill -9 mid-write leaves
    stale.write_bytes(b"PAR1 torn")
    other_day = DAY + dt.timedelta(days=1)
    write_partition(tmp_path, "t", other_day, _table(30.0), META)

    dataset = ds.dataset(tmp_path / "t", format="parquet", partitioning="hive")
    assert len(dataset.files) == 2 and all("/." not in f for f in dataset.files)
    assert dataset.to_table().num_rows == 6
    glob = str(tmp_path / "t" / "*" / "*.parquet")
    rows = duckdb.sql(
        f"SELECT dt::VARCHAR AS dt, sum(revenue) AS revenue FROM read_parquet('{glob}', "
        "hive_partitioning = true) GROUP BY dt ORDER BY dt").fetchall()
    assert rows == [("2024-05-17", 109.5), ("2024-05-18", 129.5)]

    write_partition(tmp_path, "t", DAY, _table(15.0), META)
    assert not stale.exists()
    assert sorted(os.listdir(folder)) == ["part-0.parquet"]


def test_root_below_a_regular_file_raises_output_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("I am a file")
    with pytest.raises(OutputError, match=r"cannot write .*not-a-dir.*: Not a directory"):
        write_partition(blocker / "out", "t", DAY, _table(1.0), META)
    with pytest.raises(OutputError, match="Not a directory"):
        write_marker(blocker, DAY, {"run_id": "r-1"})


def test_full_disk_raises_output_error_and_keeps_old_file(tmp_path, monkeypatch):
    old = write_partition(tmp_path, "t", DAY, _table(10.0), META)

    def disk_full(table, where, **kwargs):
        where.write(b"PAR1")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(parquet.pq, "write_table", disk_full)
    with pytest.raises(OutputError, match="No space left on device"):
        write_partition(tmp_path, "t", DAY, _table(20.0), META)
    assert read_partition(tmp_path, "t", DAY)["revenue"].iloc[0] == 10.0
    assert sorted(os.listdir(old.parent)) == ["part-0.parquet"]


def test_marker_is_written_atomically_as_json(tmp_path):
    path = write_marker(tmp_path, DAY, {"run_id": "r-1", "rows": 12, "day": DAY})
    assert path == tmp_path / "_runs" / "dt=2024-05-17" / "SUCCESS.json"
    assert json.loads(path.read_text()) == {"run_id": "r-1", "rows": 12, "day": "2024-05-17"}
    write_marker(tmp_path, DAY, {"run_id": "r-2"})
    assert json.loads(path.read_text()) == {"run_id": "r-2"}
    assert os.listdir(path.parent) == ["SUCCESS.json"]


def test_missing_partition_and_bad_arguments(tmp_path):
    with pytest.raises(PartitionNotFound, match="no t partition for 2024-05-17"):
        read_partition(tmp_path, "t", DAY)
    with pytest.raises(ValueError, match="table name"):
        write_partition(tmp_path, "../escape", DAY, _table(1.0), META)
    with pytest.raises(ValueError, match="strings"):
        write_partition(tmp_path, "t", DAY, _table(1.0), {"rows": 3})
    assert not (tmp_path / "t").exists()
