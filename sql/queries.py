"""Every read and write of the shop database; the rest of the code sees only DataFrames.

Days are `datetime.date` and mean the half-open range [00:00, next day 00:00) so the indexed
timestamp columns can be used (no date() function wrapped around them). Every value is a bound
parameter. Frames come back with the same dtypes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sql.schema import (
    JOB_TABLES,
    MARKETING_TABLES,
    Base,
    CheckoutPhoto,
    MktAgeMix,
    MktRecommendation,
    MktSalesByAgeGroup,
    Product,
    Quarantine,
    Receipt,
    ReceiptLine,
    Run,
    Store,
)

INSERT_CHUNK = 50_000  # rows per executemany: bounds memory for big demo days


class UnknownRun(LookupError):
    """finish_run was given a run_id that start_run never recorded."""


class UnknownTable(LookupError):
    """insert_frame was asked for a table or columns the schema does not have."""


PHOTO_DTYPES = {
    "photo_id": "int64",
    "receipt_id": "Int64",  # a photo may belong to no receipt
    "path": "str",
    "taken_at": "datetime64[us]",
}

PURCHASE_DTYPES = {
    "receipt_id": "int64",
    "store_id": "int64",
    "store_name": "str",
    "cashier_id": "int64",
    "ts": "datetime64[us]",
    "id_checked": "boolean",  # NULL when nothing age-restricted was sold
    "product_id": "int64",
    "product_name": "str",
    "category": "str",
    "age_restricted": "bool",
    "quantity": "int64",
    "amount": "float64",
}

RUN_DTYPES = {
    "run_id": "str",
    "job": "str",
    "day": "object",  # datetime.date values
    "model_version": "str",
    "status": "str",
    "started_at": "datetime64[us]",
    "finished_at": "datetime64[us]",
    "counts": "object",  # dicts
}


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of `day` as naive datetimes."""
    start = dt.datetime.combine(day, dt.time())
    return start, start + dt.timedelta(days=1)


def create_schema(engine: sa.Engine, *, shop: bool = True) -> None:
    """Create missing tables and indexes; existing ones are left alone. `shop=False`: only
    the job's own tables (runs, quarantine, mkt_*), for a job database beside a till."""
    Base.metadata.create_all(engine, tables=None if shop else list(JOB_TABLES))


def missing_tables(engine: sa.Engine, *, shop: bool = True) -> list[str]:
    """The job's tables (not the analysts' mkt_* copies) that the database lacks: a start-up
    check, so that a database nobody ran `init-db` on is named as such, not met later as
    "no such table". `shop=False`: runs and quarantine only (the till data is elsewhere)."""
    present = set(sa.inspect(engine).get_table_names())
    wanted = [t.name for t in Base.metadata.sorted_tables if t not in MARKETING_TABLES
              and (shop or t in JOB_TABLES)]
    return [name for name in wanted if name not in present]


def day_counts(engine: sa.Engine, day: dt.date) -> dict[str, int]:
    """Receipts and checkout photos of `day`: a day with neither was most likely never
    loaded, and must not pass for a quiet day."""
    start, end = day_bounds(day)
    with engine.connect() as conn:
        receipts = conn.scalar(sa.select(sa.func.count()).select_from(Receipt)
                               .where(Receipt.ts >= start, Receipt.ts < end))
        photos = conn.scalar(sa.select(sa.func.count()).select_from(CheckoutPhoto)
                             .where(CheckoutPhoto.taken_at >= start, CheckoutPhoto.taken_at < end))
    return {"receipts": int(receipts or 0), "photos": int(photos or 0)}


def photos_for_day(engine: sa.Engine, day: dt.date) -> pd.DataFrame:
    """Photos taken on `day`: photo_id, receipt_id, path, taken_at, ordered by photo_id."""
    start, end = day_bounds(day)
    query = (
        sa.select(
            CheckoutPhoto.photo_id,
            CheckoutPhoto.receipt_id,
            CheckoutPhoto.path,
            CheckoutPhoto.taken_at,
        )
        .where(CheckoutPhoto.taken_at >= start, CheckoutPhoto.taken_at < end)
        .order_by(CheckoutPhoto.photo_id)
    )
    return _read(engine, query, PHOTO_DTYPES)


def purchase_lines_for_day(engine: sa.Engine, day: dt.date) -> pd.DataFrame:
    """Every receipt line of `day` with its receipt, store and product, in receipt order."""
    start, end = day_bounds(day)
    query = (
        sa.select(
            Receipt.receipt_id,
            Receipt.store_id,
            Store.name.label("store_name"),
            Receipt.cashier_id,
            Receipt.ts,
            Receipt.id_checked,
            ReceiptLine.product_id,
            Product.name.label("product_name"),
            Product.category,
            Product.age_restricted,
            ReceiptLine.quantity,
            ReceiptLine.amount,
        )
        .select_from(Receipt)
        .join(ReceiptLine, ReceiptLine.receipt_id == Receipt.receipt_id)
        .join(Store, Store.store_id == Receipt.store_id)
        .join(Product, Product.product_id == ReceiptLine.product_id)
        .where(Receipt.ts >= start, Receipt.ts < end)
        .order_by(Receipt.receipt_id, ReceiptLine.line_no)
    )
    return _read(engine, query, PURCHASE_DTYPES)


def delete_photos_for_day(engine: sa.Engine, day: dt.date) -> int:
    """Remove the photo rows taken on `day` (not the files); returns how many went.

    Lets the demo regenerate a day without duplicating its photo rows.
    """
    start, end = day_bounds(day)
    with engine.begin() as conn:
        result = conn.execute(
            sa.delete(CheckoutPhoto).where(
                CheckoutPhoto.taken_at >= start, CheckoutPhoto.taken_at < end
            )
        )
        return result.rowcount


def start_run(engine: sa.Engine, run_id: str, job: str, day: dt.date, model_version: str,
              holder: str = "") -> None:
    """Record that a run began, so a crash still leaves a 'running' row to find.

    `holder` names the run lock it runs under (host and lock file, jobs/lock.py): kept in
    `counts` while it runs, so that the next run under that lock can tell its killed
    predecessors from runs elsewhere (`mark_interrupted`).
    Runs of the same day still marked 'running' under the same lock (or recorded without
    one) were killed (the caller holds the run lock), so they become 'abandoned'; those of
    another lock may be alive. Safe to retry: a second call for the same run id is a no-op.
    """
    with engine.begin() as conn:
        same_day = conn.execute(
            sa.select(Run.run_id, Run.counts)
            .where(Run.day == day, Run.status == "running", Run.run_id != run_id)).all()
        dead = [other for other, counts in same_day
                if _json_object(counts).get("holder", holder) == holder]
        if dead:
            conn.execute(
                sa.update(Run)
                .where(Run.run_id.in_(dead), Run.status == "running")
                .values(status="abandoned", finished_at=_utcnow())
            )
        if conn.execute(sa.select(Run.run_id).where(Run.run_id == run_id)).first():
            return
        conn.execute(
            sa.insert(Run).values(
                run_id=run_id,
                job=job,
                day=day,
                model_version=model_version,
                status="running",
                started_at=_utcnow(),
                counts=json.dumps({"holder": holder}) if holder else "{}",
            )
        )


def mark_interrupted(engine: sa.Engine, holder: str) -> list[str]:
    """Mark 'interrupted' the runs still 'running' under lock `holder`; returns their ids.

    Called by a run that has just taken that lock: the kernel frees a lock only when its
    holder exits, so such rows belong to drivers killed before they could record an outcome
    (kill -9, power loss). Runs under other locks (other machines, other --lock-dir) may be
    alive and are left alone, as are rows of versions that did not record a holder.
    """
    with engine.begin() as conn:
        running = conn.execute(sa.select(Run.run_id, Run.counts)
                               .where(Run.status == "running")).all()
        dead = [run_id for run_id, counts in running
                if _json_object(counts).get("holder") == holder]
        if dead:
            conn.execute(sa.update(Run)
                         .where(Run.run_id.in_(dead), Run.status == "running")
                         .values(status="interrupted", finished_at=_utcnow()))
    return dead


def finish_run(engine: sa.Engine, run_id: str, status: str, counts: Mapping[str, object]) -> None:
    """Store the outcome and per-stage counts of a run started with start_run."""
    with engine.begin() as conn:
        result = conn.execute(
            sa.update(Run)
            .where(Run.run_id == run_id)
            .values(
                status=status,
                finished_at=_utcnow(),
                counts=json.dumps(dict(counts), sort_keys=True, default=_json_default),
            )
        )
        if result.rowcount != 1:
            raise UnknownRun(f"no run with id {run_id!r} was started")


def latest_runs(engine: sa.Engine, limit: int = 20) -> pd.DataFrame:
    """The most recently started runs first, with `counts` decoded into dicts."""
    query = (
        sa.select(
            Run.run_id,
            Run.job,
            Run.day,
            Run.model_version,
            Run.status,
            Run.started_at,
            Run.finished_at,
            Run.counts,
        )
        .order_by(Run.started_at.desc(), Run.run_id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        rows = [(*row[:-1], json.loads(row[-1] or "{}")) for row in conn.execute(query)]
    return _frame(rows, RUN_DTYPES)


def replace_quarantine(
    engine: sa.Engine, run_id: str, day: dt.date, rows: pd.DataFrame
) -> int:
    """Replace `day`'s quarantined photos with `rows` (photo_id, path, reason, detail).

    Delete and insert share one transaction: a rerun never leaves the day half-listed.
    Returns the number of rows inserted.
    """
    _require(rows, ["photo_id", "path", "reason", "detail"], "quarantine rows")
    frame = rows[["photo_id", "path", "reason", "detail"]].assign(run_id=run_id, day=day)
    with engine.begin() as conn:
        conn.execute(sa.delete(Quarantine).where(Quarantine.day == day))
        return _insert(conn, Quarantine.__table__, frame)


def insert_frame(engine: sa.Engine, table_name: str, df: pd.DataFrame) -> int:
    """Bulk-insert `df` (columns named as in the table) with executemany; returns row count."""
    table = _table(table_name, df)
    with engine.begin() as conn:
        return _insert(conn, table, df)


def insert_missing(engine: sa.Engine, table_name: str, df: pd.DataFrame, key: str) -> int:
    """Insert the rows of `df` whose `key` is not in the table yet (reference data, once)."""
    table = _table(table_name, df)
    with engine.begin() as conn:
        existing = set(conn.execute(sa.select(table.c[key])).scalars())
        return _insert(conn, table, df[~df[key].isin(existing)])


def replace_receipts(
    engine: sa.Engine,
    first_id: int,
    end_id: int,
    receipts: pd.DataFrame,
    lines: pd.DataFrame,
) -> int:
    """Delete receipts with first_id <= receipt_id < end_id (their lines and photo rows too),
    then insert `receipts` and `lines`, all in one transaction. Returns receipts inserted.

    Makes regenerating a demo day idempotent without touching other days.
    """
    in_range = sa.and_(Receipt.receipt_id >= first_id, Receipt.receipt_id < end_id)
    with engine.begin() as conn:
        photo_range = sa.and_(
            CheckoutPhoto.receipt_id >= first_id, CheckoutPhoto.receipt_id < end_id
        )
        conn.execute(sa.delete(CheckoutPhoto).where(photo_range))
        line_range = sa.and_(ReceiptLine.receipt_id >= first_id, ReceiptLine.receipt_id < end_id)
        conn.execute(sa.delete(ReceiptLine).where(line_range))
        conn.execute(sa.delete(Receipt).where(in_range))
        count = _insert(conn, _table("receipts", receipts), receipts)
        _insert(conn, _table("receipt_lines", lines), lines)
        return count


# --- marketing tables in the database (`ageseg publish`) ------------------------------------


def create_marketing_tables(engine: sa.Engine) -> None:
    """Create the mkt_* tables if missing: databases set up before they existed get them;
    tables created before a nullable column existed (the corrected estimates) get it."""
    Base.metadata.create_all(engine, tables=list(MARKETING_TABLES))
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in MARKETING_TABLES:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name in have or not column.nullable:
                    continue
                kind = column.type.compile(dialect=engine.dialect)
                conn.execute(sa.text(
                    f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def replace_marketing_day(
    engine: sa.Engine, day: dt.date, sales: pd.DataFrame, recommendations: pd.DataFrame,
    age_mix: pd.DataFrame | None = None,
) -> dict[str, int]:
    """Replace `day`'s rows of mkt_sales_by_age_group and mkt_recommendations (and
    mkt_age_mix, when the day has that table: days written before it did not).

    The deletes and inserts share one transaction: readers see the old day or the new
    one, and publishing a day twice leaves one copy. Returns rows inserted per table.
    """
    counts = {}
    tables = [(MktSalesByAgeGroup, sales), (MktRecommendation, recommendations)]
    if age_mix is not None:
        tables.append((MktAgeMix, age_mix))
    with engine.begin() as conn:
        for model, frame in tables:
            table = model.__table__
            rows = frame.assign(day=day)
            _table(table.name, rows)  # refuse columns the table does not have
            conn.execute(sa.delete(table).where(table.c.day == day))
            counts[table.name] = _insert(conn, table, rows)
    return counts


# --- helpers ---------------------------------------------------------------------------------


def _table(table_name: str, df: pd.DataFrame) -> sa.Table:
    table = Base.metadata.tables.get(table_name)
    if table is None:
        raise UnknownTable(f"no table named {table_name!r}")
    unknown = sorted(set(df.columns) - set(table.c.keys()))
    if unknown:
        raise UnknownTable(f"table {table_name!r} has no column(s) {', '.join(unknown)}")
    return table


def _insert(conn: sa.Connection, table: sa.Table, df: pd.DataFrame) -> int:
    """executemany in chunks: one round trip per chunk instead of one per row."""
    records = _records(df)
    for start in range(0, len(records), INSERT_CHUNK):
        conn.execute(sa.insert(table), records[start : start + INSERT_CHUNK])
    return len(records)


def _records(df: pd.DataFrame) -> list[dict[str, object]]:
    """Rows as dicts of plain Python values (None for missing) that every driver accepts."""
    names = [str(name) for name in df.columns]
    columns = [_python_values(df[name]) for name in df.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _python_values(series: pd.Series) -> list[object]:
    """Column-wise conversion: per-value checks only for columns that have missing values."""
    if pd.api.types.is_datetime64_any_dtype(series):
        values = list(series.dt.to_pydatetime())
    else:
        values = series.tolist()  # numpy scalars become int/float/bool/str
    if not series.isna().any():
        return values
    return [None if _is_missing(v) else v for v in values]


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def _read(engine: sa.Engine, query: sa.Select, dtypes: Mapping[str, str]) -> pd.DataFrame:
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return _frame(rows, dtypes)


def _frame(rows: Sequence[Sequence[object]], dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A frame with fixed dtypes, also when empty, whichever driver produced the values.

    `rows` are tuples in the order of `dtypes`, as the queries select them.
    """
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(dtypes)
    frame = pd.DataFrame({name: pd.Series(values, dtype=object)
                          for name, values in zip(dtypes, columns, strict=True)})
    return frame.astype({k: v for k, v in dtypes.items() if v != "object"})


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lack column(s): {', '.join(missing)}")


def _json_object(text: str | None) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
