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
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"ageseg"
PART_NAME = "part-0.parquet"
MARKER_NAME = "SUCCESS.json"
RUNS_DIR = "_runs"
COMPRESSION = "zstd"
_TEMP_SUFFIX = ".tmp"
_PROBE_PREFIX = ".ageseg-probe."
_TABLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DAY_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


class OutputError(Exception):
    """An output root cannot be written (missing permission, not a directory, disk full)."""


class PartitionNotFound(OutputError, FileNotFoundError):
    """No partition was written for that table and day."""


class PartitionUnreadable(Exception):
    """A partition exists but cannot be read: cut short, not Parquet, unreadable file."""


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
    return write_partitions([(root, table, df)], day, metadata)[0]


def write_partitions(
    parts: Sequence[tuple[Path, str, pd.DataFrame]],
    day: dt.date,
    metadata: Mapping[str, str],
    *,
    before_commit: Callable[[], object] | None = None,
) -> list[Path]:
    """Replace the day's partition of several tables, all or none as far as a failure goes.

    Every file is first written in full to its hidden temp name and fsynced; only then are
    they renamed over the old ones, one after the other. So a full disk or an unwritable
    root met while writing any of them leaves every table as it was, instead of a new
    restricted table beside an old marketing one. (A kill -9 can still fall between two
    renames, a window of microseconds; each file is then whole, old or new.)
    Each part is (root, table, df); returns the files' paths in the same order.
    `before_commit` runs once every file is staged, just before the first rename: the place
    to remove the day's SUCCESS marker (`remove_marker`), so that a failed write leaves the
    old marker beside the old files and a kill between renames leaves no marker at all.
    """
    bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
    if bad:
        raise ValueError(f"metadata keys and values must be strings: {bad}")
    staged: list[tuple[Path, Path]] = []
    try:
        for root, table, df in parts:
            target = partition_dir(root, table, day) / PART_NAME
            arrow = pa.Table.from_pandas(df, preserve_index=False)
            schema_metadata = {**(arrow.schema.metadata or {}), METADATA_KEY: _json_bytes(metadata)}
            arrow = arrow.replace_schema_metadata(schema_metadata)
            staged.append((_stage(target, _parquet_writer(arrow)), target))
        if before_commit is not None:
            before_commit()
        for temp, target in staged:
            _commit(temp, target)
    finally:
        for temp, _ in staged:  # no-op for committed ones: their temp name is gone
            _unlink_quietly(temp)
    return [target for _, target in staged]


def _parquet_writer(arrow: pa.Table) -> Callable[[BinaryIO], object]:
    return lambda f: pq.write_table(arrow, f, compression=COMPRESSION)


def check_writable(root: Path) -> None:
    """Fail now, not after hours of scoring, when `root` cannot take files.

    Creates the folder if needed, then writes, syncs and removes one small hidden file
    (readers skip hidden names). Raises OutputError for a read-only or full file system,
    missing permissions, or a path that runs through a regular file.
    """
    probe = Path(root) / f"{_PROBE_PREFIX}{uuid.uuid4().hex}{_TEMP_SUFFIX}"
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        for stale in Path(root).glob(f"{_PROBE_PREFIX}*{_TEMP_SUFFIX}"):  # a killed probe's
            _unlink_quietly(stale)
        with open(probe, "wb") as f:
            f.write(b"ageseg\n")
            f.flush()
            os.fsync(f.fileno())
    except FileExistsError:
        raise OutputError(f"cannot write to {root}: it is a file, not a folder") from None
    except OSError as exc:
        raise OutputError(f"cannot write to {root}: {exc.strerror or exc}") from None
    finally:
        _unlink_quietly(probe)


def read_partition(root: Path, table: str, day: dt.date,
                   columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The day's partition of `table` as written (without the dt partition column), or only
    `columns` of it."""
    return pq.read_table(_existing(root, table, day), columns=columns).to_pandas()


def read_partition_metadata(root: Path, table: str, day: dt.date) -> dict[str, str]:
    """The metadata dict given to write_partition, read from the file's schema only."""
    schema = pq.read_schema(_existing(root, table, day))
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def partition_days(root: Path, table: str) -> list[dt.date]:
    """Days that have a complete partition of `table`, oldest first (none: empty list)."""
    base = Path(root) / table
    partition_dir(root, table, dt.date.min)  # validates the table name
    if not base.is_dir():
        return []
    days = []
    for entry in base.iterdir():
        match = _DAY_DIR.match(entry.name)
        if match and (entry / PART_NAME).is_file():
            days.append(dt.date.fromisoformat(match.group(1)))
    return sorted(days)


def partition_files(root: Path, table: str, start: dt.date, end: dt.date
                    ) -> list[tuple[dt.date, Path]]:
    """(day, file) of each complete partition with start <= day <= end, oldest first: for
    readers that scan the files themselves instead of loading them one by one."""
    return [(day, partition_dir(root, table, day) / PART_NAME)
            for day in partition_days(root, table) if start <= day <= end]


def union_days_sql(con: Any, days: Iterable[pd.DataFrame | Path], columns: Sequence[str],
                   *, day_order: bool = False, optional: Mapping[str, str] | None = None
                   ) -> str | None:
    """SQL over the rows of `days` (frames, or partition files; oldest first) for the DuckDB
    connection `con`: one UNION ALL of `columns`, the frames registered in `con`, the files
    read in one scan per set of columns they hold. With `day_order`, a `day_order` column
    gives each row's day position (later days higher). `optional` (column: SQL type) names
    columns that days written by an older version lack: they read as typed nulls. None when
    there are no days.
    """
    optional = dict(optional or {})
    parts: list[str] = []
    files: dict[tuple[str, ...], list[tuple[int, str]]] = {}
    for order, day in enumerate(days):
        if isinstance(day, pd.DataFrame):
            have = [c for c in columns if c in day.columns or c not in optional]
            con.register(f"day_{order}",
                         pa.Table.from_pandas(day[have], preserve_index=False))
            extra = f", {order} AS day_order" if day_order else ""
            parts.append(f"SELECT {_select(columns, have, optional)}{extra} FROM day_{order}")
        else:
            try:
                names = set(pq.read_schema(day).names) if optional else set()
            except (pa.ArrowException, OSError) as exc:  # name the file, as DuckDB would
                raise pa.ArrowInvalid(f"{day}: {str(exc).strip() or type(exc).__name__}"
                                      ) from exc
            missing = tuple(c for c in optional if c in columns and c not in names)
            files.setdefault(missing, []).append((order, "'" + str(day).replace("'", "''") + "'"))
    for missing, group in files.items():
        have = [c for c in columns if c not in missing]
        select = _select(columns, have, optional)
        quoted = ", ".join(name for _, name in group)
        orders = [order for order, _ in group]
        if day_order:  # each row's order from its file's place in the list
            parts.append(f"SELECT {select}, list_extract({orders}, list_position("
                         f"[{quoted}], filename)) AS day_order "
                         f"FROM read_parquet([{quoted}], filename = true)")
        else:
            parts.append(f"SELECT {select} FROM read_parquet([{quoted}])")
    return " UNION ALL ".join(parts) if parts else None


def _select(columns: Sequence[str], have: Sequence[str], optional: Mapping[str, str]) -> str:
    """The select list: present columns by name, absent optional ones as typed nulls."""
    return ", ".join(f'"{c}"' if c in have else f'CAST(NULL AS {optional[c]}) AS "{c}"'
                     for c in columns)


def iter_partitions(
    root: Path, table: str, start: dt.date, end: dt.date,
    columns: Sequence[str] | None = None,
) -> Iterator[tuple[dt.date, pd.DataFrame]]:
    """(day, frame) for each partition with start <= day <= end, oldest first (only
    `columns`, when given).

    A generator: callers that fold days into a running total hold one day at a time.
    """
    for day, path in partition_files(root, table, start, end):
        yield day, pq.read_table(path, columns=columns).to_pandas()


def read_range(root: Path, table: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """All partitions with start <= day <= end in one frame, with a `dt` (date) column."""
    frames = [df.assign(dt=day) for day, df in iter_partitions(root, table, start, end)]
    if not frames:
        return pd.DataFrame({"dt": pd.Series(dtype=object)})
    return pd.concat(frames, ignore_index=True)


def delete_partitions_before(root: Path, table: str, cutoff: dt.date) -> tuple[int, int]:
    """Delete every partition of `table` for a day before `cutoff`; (partitions, rows) gone.

    Each partition folder is first renamed to a hidden name, then removed, so readers never
    list a half-deleted day.
    """
    partitions = rows = 0
    for stale in (Path(root) / table).glob(".dt=*.deleting"):  # left by a kill -9 mid-delete
        shutil.rmtree(stale, ignore_errors=True)
    for day in partition_days(root, table):
        if day >= cutoff:
            break
        folder = partition_dir(root, table, day)
        try:
            count = pq.read_metadata(folder / PART_NAME).num_rows
            doomed = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.deleting")
            os.replace(folder, doomed)
            shutil.rmtree(doomed)
        except OSError as exc:
            raise OutputError(f"cannot delete {folder}: {exc.strerror or exc}") from exc
        partitions += 1
        rows += count
    return partitions, rows


def write_marker(root: Path, day: dt.date, info: Mapping[str, object]) -> Path:
    """Write `root/_runs/dt=YYYY-MM-DD/SUCCESS.json`: the day's outputs are complete.

    Written last, after all partitions, so consumers can wait for it.
    """
    target = _day_dir(root, RUNS_DIR, day) / MARKER_NAME
    data = json.dumps(dict(info), indent=2, sort_keys=True, default=str).encode() + b"\n"
    _atomic_write(target, lambda f: f.write(data))
    return target


def read_marker(root: Path, day: dt.date) -> dict[str, Any] | None:
    """The day's SUCCESS.json as written by `write_marker`; None when there is none (the
    day was never finished, or its files are being replaced) or it cannot be read."""
    target = _day_dir(root, RUNS_DIR, day) / MARKER_NAME
    try:
        return json.loads(target.read_bytes())
    except (OSError, ValueError):
        return None


def remove_marker(root: Path, day: dt.date) -> None:
    """Remove the day's SUCCESS.json before the day's partitions are replaced.

    A marker then always describes the files beside it: a run that dies after replacing
    some partitions leaves no marker (consumers wait for the rerun) rather than the previous
    run's marker next to this run's files.
    """
    target = _day_dir(root, RUNS_DIR, day) / MARKER_NAME
    try:
        target.unlink(missing_ok=True)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot remove {target}: {exc.strerror or exc}") from None


def _existing(root: Path, table: str, day: dt.date) -> Path:
    path = partition_dir(root, table, day) / PART_NAME
    if not path.is_file():
        raise PartitionNotFound(f"no {table} partition for {day.isoformat()} at {path}")
    return path


def _atomic_write(target: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write via a hidden temp file + fsync + os.replace + directory fsync."""
    temp = _stage(target, write)
    try:
        _commit(temp, target)
    finally:
        _unlink_quietly(temp)


def _stage(target: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write `target`'s content, synced, to a hidden temp file beside it; return that file.

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
    except OSError as exc:
        _unlink_quietly(temp)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink_quietly(temp)
        raise
    return temp


def _commit(temp: Path, target: Path) -> None:
    """Rename the staged file over `target` and make the rename durable."""
    try:
        os.replace(temp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc


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
