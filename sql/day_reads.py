"""Bulk reads of one day's receipts and purchase lines, in receipt order, as column arrays.

A large chain's day is tens of millions of lines. Fetched as Python tuples they cost about
2 µs each (40 s for 20 M lines), so on PostgreSQL the rows travel through ADBC: the
database's binary COPY stream decoded straight into Arrow batches in C++, a bounded number
of rows at a time. Other databases (SQLite for the demo and tests) go through SQLAlchemy in
chunks. Both readers hand out the same plain numpy arrays, so the counting downstream is one
code path, and both read inside one transaction so receipts and lines agree.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sql.engine import PG_CONNECT_TIMEOUT_S, libpq_uri
from sql.queries import day_bounds

LINE_COLUMNS = ("receipt_id", "product_id", "quantity", "cents")
CHUNK_ROWS = 1_000_000  # lines per chunk handed on: ~30 MB of arrays
ADBC_BATCH_BYTES = 32 * 1024 * 1024  # ADBC's batch size hint: about a million lines
PREFETCH = 2  # chunks read ahead on a thread while the previous one is counted

RECEIPT_DTYPES = {
    "receipt_id": "int64",
    "store_id": "int64",
    "cashier_id": "int64",
    "ts": "datetime64[us]",
    "id_checked": "boolean",
}

_RECEIPTS_SQL = """
SELECT receipt_id, store_id, cashier_id, ts, id_checked
FROM receipts
WHERE ts >= {start} AND ts < {end}
ORDER BY receipt_id
"""
# The amount travels and is summed in integer cents: exact on every database and in numpy.
_LINES_SQL = """
SELECT l.receipt_id, l.product_id, l.quantity, CAST(ROUND(l.amount * 100) AS BIGINT) AS cents
FROM receipts r
JOIN receipt_lines l ON l.receipt_id = r.receipt_id
WHERE r.ts >= {start} AND r.ts < {end}
ORDER BY l.receipt_id
"""
_PRODUCTS_SQL = "SELECT product_id, name, category, age_restricted FROM products"
_STORES_SQL = "SELECT store_id, name FROM stores"


@dataclass(frozen=True)
class LineChunk:
    """Consecutive purchase lines, sorted by receipt_id; a receipt may continue in the next
    chunk. All arrays int64 and of one length."""

    receipt_id: np.ndarray
    product_id: np.ndarray
    quantity: np.ndarray
    cents: np.ndarray

    def __len__(self) -> int:
        return len(self.receipt_id)


class DayReader(Protocol):
    """One consistent view of one day: its receipts, its lines, the stores and products."""

    def receipts(self) -> pd.DataFrame:
        """receipt_id, store_id, cashier_id, ts, id_checked of the day, by receipt_id."""

    def lines(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[LineChunk]:
        """The day's lines in receipt_id order, at most `chunk_rows` per chunk."""

    def products(self) -> pd.DataFrame:
        """product_id, name, category, age_restricted of every product."""

    def stores(self) -> pd.DataFrame:
        """store_id, name of every store."""


@contextmanager
def read_day(engine: sa.Engine, day: dt.date, *, fast: bool = True) -> Iterator[DayReader]:
    """A DayReader for `day`, in one read-only transaction (repeatable read on PostgreSQL).

    `fast=False` forces the SQLAlchemy reader on PostgreSQL too (tests compare the two).
    """
    if fast and engine.dialect.name == "postgresql":
        with _AdbcReader.open(engine, day) as reader:
            yield reader
        return
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield _SqlAlchemyReader(conn, day)


class _SqlAlchemyReader:
    def __init__(self, conn: sa.Connection, day: dt.date) -> None:
        self._conn = conn
        self._params = dict(zip(("start", "end"), day_bounds(day), strict=True))

    def _sql(self, template: str) -> sa.TextClause:
        return sa.text(template.format(start=":start", end=":end"))

    def receipts(self) -> pd.DataFrame:
        rows = self._conn.execute(self._sql(_RECEIPTS_SQL), self._params).all()
        frame = pd.DataFrame(rows, columns=list(RECEIPT_DTYPES))
        frame["ts"] = pd.to_datetime(frame["ts"])  # SQLite hands back text
        return frame.astype(RECEIPT_DTYPES)

    def lines(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[LineChunk]:
        result = self._conn.execute(self._sql(_LINES_SQL), self._params,
                                    execution_options={"yield_per": chunk_rows})
        for rows in result.partitions(chunk_rows):
            columns = np.array(rows, dtype=np.int64).reshape(-1, len(LINE_COLUMNS)).T
            yield LineChunk(*columns)

    def products(self) -> pd.DataFrame:
        return pd.DataFrame(self._conn.execute(sa.text(_PRODUCTS_SQL)).all(),
                            columns=["product_id", "name", "category", "age_restricted"])

    def stores(self) -> pd.DataFrame:
        return pd.DataFrame(self._conn.execute(sa.text(_STORES_SQL)).all(),
                            columns=["store_id", "name"])


class _AdbcReader:
    """PostgreSQL through ADBC. Errors come out as SQLAlchemy's, so `with_retries` and the
    job's one-line messages treat them like any other database error."""

    def __init__(self, conn: object, day: dt.date) -> None:
        self._conn = conn
        start, end = day_bounds(day)
        # Literals, not parameters: with bound parameters the driver cannot use COPY and
        # returns the whole result as one batch. Both values are datetimes we formatted.
        self._bounds = {"start": f"TIMESTAMP '{start.isoformat(' ')}'",
                        "end": f"TIMESTAMP '{end.isoformat(' ')}'"}

    @classmethod
    @contextmanager
    def open(cls, engine: sa.Engine, day: dt.date) -> Iterator[_AdbcReader]:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc_pg

        url = engine.url
        if "connect_timeout" not in url.query:  # as make_engine's connections: fail fast
            url = url.update_query_dict({"connect_timeout": str(PG_CONNECT_TIMEOUT_S)})
        # The engine's URL carries its session options: a read-only source's bulk reads are
        # read-only sessions too, and look the tables up on the same search_path.
        uri = libpq_uri(url)
        try:
            conn = adbc_pg.connect(uri)
        except adbc_driver_manager.Error as exc:
            raise _as_sqlalchemy(exc) from None
        try:
            reader = cls(conn, day)
            reader._run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield reader
        except adbc_driver_manager.Error as exc:
            raise _as_sqlalchemy(exc) from None
        finally:
            with suppress(adbc_driver_manager.Error):  # a lost connection cannot roll back
                conn.rollback()
            with suppress(adbc_driver_manager.Error):
                conn.close()

    def _run(self, sql: str) -> object:
        cursor = self._conn.cursor()
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(ADBC_BATCH_BYTES)})
        cursor.execute(sql)
        return cursor

    def receipts(self) -> pd.DataFrame:
        table = self._run(_RECEIPTS_SQL.format(**self._bounds)).fetch_arrow_table()
        frame = table.to_pandas()
        return frame.astype(RECEIPT_DTYPES)

    def lines(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[LineChunk]:
        cursor = self._run(_LINES_SQL.format(**self._bounds))  # the batches live as long
        batches = cursor.fetch_record_batch()
        for batch in _read_ahead(iter(batches), PREFETCH):
            columns = [np.asarray(batch.column(i), dtype=np.int64)
                       for i in range(len(LINE_COLUMNS))]
            for first in range(0, batch.num_rows, chunk_rows):
                yield LineChunk(*(c[first : first + chunk_rows] for c in columns))
        cursor.close()

    def products(self) -> pd.DataFrame:
        return self._run(_PRODUCTS_SQL).fetch_arrow_table().to_pandas()

    def stores(self) -> pd.DataFrame:
        return self._run(_STORES_SQL).fetch_arrow_table().to_pandas()


def _read_ahead(items: Iterator[object], depth: int) -> Iterator[object]:
    """Pull `items` on a thread, at most `depth` ahead, so that the database keeps sending
    while the caller counts (Arrow's reader releases the GIL while it waits and decodes)."""
    done = object()
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has gone

    def pull() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    thread = threading.Thread(target=pull, name="ageseg-day-lines", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _as_sqlalchemy(exc: Exception) -> sa.exc.DBAPIError:
    """An ADBC error as the SQLAlchemy error class the rest of the job understands."""
    import adbc_driver_manager

    kind = (sa.exc.OperationalError if isinstance(exc, adbc_driver_manager.OperationalError)
            else sa.exc.DatabaseError)
    return kind(None, None, exc)  # describe_error masks any password in the message
