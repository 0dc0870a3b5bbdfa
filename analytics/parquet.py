"""The only writer of output files: Parquet partitions and run markers, replaced atomically.

Readers (dashboards, DuckDB, Spark) may look at a partition while the nightly job rewrites it,
and the job may die mid-write. So each file is written to a hidden temporary file in the
same directory, synced, then renamed over the old one: readers see the old file or the new
one, never a torn one. Hidden (".") temp files are skipped by Hive-style readers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"ageseg"
PART_NAME = "part-0.parquet"
MARKER_NAME = "SUCCESS.json"
RUNS_DIR = "_runs"
COMPRESSION = "zstd"
_TEMP_SUFFIX = ".tmp"
_TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class OutputError(Exception):
    """An output root cannot be written (missing permission, not a directory, disk full)."""


class PartitionNotFound(OutputError, FileNotFoundError):
    """No partition was written for that table and day."""


def partition_dir(root: Path, table: str, day: dt.date) -> Path:
    """`root/table/dt=YYYY-MM-DD`: the Hive layout Spark, DuckDB and pyarrow understand."""
    if not _TABLE_NAME.match(table):
        raise ValueError(
            f"table name {table!r} must be letters, digits, '_' or '-', not starting with '_' "
            "(readers skip names starting with '_' or '.')"
        )
    return _day_dir(root, table, day)


def _day_dir(root: Path, name: str, day: dt.date) -> Path:
    return Path(root) / name / f"dt={day.isoformat()}"


def write_partition(
    root: Path, table: str, day: dt.date, df: pd.DataFrame, metadata: Mapping[str, str]
) -> Path:
    """Write `df` as the day's partition of `table` (zstd), replacing any previous one.

    `metadata` (run id, model version, age bins...) is stored as JSON under b"ageseg" in the
    Arrow schema metadata so the file documents how it was made. Returns the file's path.
    """
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"metadata keys and values must be strings: {bad}")
    arrow = pa.Table.from_pandas(df, preserve_index=False)
    schema_metadata = {**(arrow.schema.metadata or {}), METADATA_KEY: _json_bytes(metadata)}
    arrow = arrow.replace_schema_metadata(schema_metadata)
    target = partition_dir(root, table, day) / PART_NAME
    _atomic_write(target, lambda f: pq.write_table(arrow, f, compression=COMPRESSION))
    return target


def read_partition(root: Path, table: str, day: dt.date) -> pd.DataFrame:
    """The day's partition of `table` as written (without the dt partition column)."""
    return pq.read_table(_existing(root, table, day)).to_pandas()


def read_partition_metadata(root: Path, table: str, day: dt.date) -> dict[str, str]:
    """The metadata dict given to write_partition, read from the file's schema only."""
    schema = pq.read_schema(_existing(root, table, day))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def write_marker(root: Path, day: dt.date, info: Mapping[str, object]) -> Path:
    """Write `root/_runs/dt=YYYY-MM-DD/SUCCESS.json`: the day's outputs are complete.

    Written last, after all partitions, so consumers can wait for it.
    """
    target = _day_dir(root, RUNS_DIR, day) / MARKER_NAME
    data = json.dumps(dict(info), indent=2, sort_keys=True, default=str).encode() + b"\n"
    _atomic_write(target, lambda f: f.write(data))
    return target


def _existing(root: Path, table: str, day: dt.date) -> Path:
    path = partition_dir(root, table, day) / PART_NAME
    if not path.is_file():
        raise PartitionNotFound(f"no {table} partition for {day.isoformat()} at {path}")
    return path


def _atomic_write(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via a hidden temp file + fsync + os.replace + directory fsync.

    Temp files left by an earlier crash are removed first; a failure here removes its own.
    """
    directory = target.parent
    temp = directory / f".{target.name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(directory, target.name)
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, target)
        _fsync_dir(directory)
    except OSError as exc:
        _unlink_quietly(temp)
        reason = exc.strerror or str(exc)
        raise OutputError(f"cannot write {target}: {reason}") from exc
    except BaseException:
        _unlink_quietly(temp)
        raise


def _remove_stale_temps(directory: Path, name: str) -> None:
    for stale in directory.glob(f".{name}.*{_TEMP_SUFFIX}"):
        _unlink_quietly(stale)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); some platforms cannot open directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(metadata: Mapping[str, str]) -> bytes:
    return json.dumps(dict(metadata), sort_keys=True).encode()
