"""Every read and write of the shop database; the rest of the code sees only DataFrames.

Days are `datetime.date` and mean the half-open range [00:00, next day 00:00) so the indexed
timestamp columns can be used (no date() function wrapped around them). Every value is a bound
parameter. Frames come back with the same dtypes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from sql.schema import (
    MARKETING_TABLES,
    Base,
    CheckoutPhoto,
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


class EstimatesError(ValueError):
    """Estimates handed to aggregate_day are unusable (missing columns, two for one receipt)."""


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


def create_schema(engine: sa.Engine) -> None:
    """Create missing tables and indexes; existing ones are left alone."""
    Base.metadata.create_all(engine)


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


def start_run(engine: sa.Engine, run_id: str, job: str, day: dt.date, model_version: str) -> None:
    """Record that a run began, so a crash still leaves a 'running' row to find.

    Runs of the same day still marked 'running' were killed (the caller holds the run lock),
    so they become 'abandoned'. Safe to retry: a second call for the same run id is a no-op.
    """
    with engine.begin() as conn:
        conn.execute(
            sa.update(Run)
            .where(Run.day == day, Run.status == "running", Run.run_id != run_id)
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
                counts="{}",
            )
        )


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
    """Create the mkt_* tables if missing: databases set up before they existed get them."""
    Base.metadata.create_all(engine, tables=list(MARKETING_TABLES))


def replace_marketing_day(
    engine: sa.Engine, day: dt.date, sales: pd.DataFrame, recommendations: pd.DataFrame
) -> dict[str, int]:
    """Replace `day`'s rows of mkt_sales_by_age_group and mkt_recommendations.

    Both deletes and both inserts share one transaction: readers see the old day or the new
    one, and publishing a day twice leaves one copy. Returns rows inserted per table.
    """
    counts = {}
    with engine.begin() as conn:
        for model, frame in ((MktSalesByAgeGroup, sales), (MktRecommendation, recommendations)):
            table = model.__table__
            rows = frame.assign(day=day)
            _table(table.name, rows)  # refuse columns the table does not have
            conn.execute(sa.delete(table).where(table.c.day == day))
            counts[table.name] = _insert(conn, table, rows)
    return counts


# --- the day's aggregates, computed by the database -----------------------------------------
#
# The nightly job never holds the day's purchase lines: it uploads one small row per receipt
# (its estimated age group and age) into a temporary table and lets the database join and
# aggregate, so the job's memory depends on the number of cells, not of lines.

ESTIMATES_TEMP = "ageseg_day_estimates"
CATEGORIES_TEMP = "ageseg_day_categories"
RESTRICTED_TEMP = "ageseg_day_restricted"
# Per sort/hash node of this transaction only: the day's lines are sorted once by receipt;
# PostgreSQL's 4 MB default would spill that sort to disk in many small runs.
PG_WORK_MEM = "256MB"
FETCH_CHUNK = 100_000  # result rows per round trip, so a big result never sits in Python twice
COPY_CHUNK = 200_000  # estimate rows formatted per COPY block
_PARAM = re.compile(r"(?<!:):(\w+)")  # SQLAlchemy's :name placeholders, for psycopg's COPY

CELL_DTYPES = {
    "store_id": "int64",
    "age_code": "Int64",
    "product_id": "int64",
    "receipts": "int64",
    "category_receipts": "int64",
    "group_receipts": "int64",
    "lines": "int64",
    "items": "int64",
    "revenue_cents": "int64",
}
RESTRICTED_SALES_DTYPES = {
    "store_id": "int64",
    "cashier_id": "int64",
    "alcohol_sales": "int64",
    "with_age": "int64",
    "flagged": "int64",
}
FLAGGED_DTYPES = {
    "receipt_id": "int64",
    "store_id": "int64",
    "cashier_id": "int64",
    "ts": "datetime64[us]",
    "age": "float64",
    "id_checked": "boolean",
}

# One pass over the day's lines in (receipt, category, product) order. LAG marks the first
# line of each receipt, of each category within a receipt and of each product within a
# receipt, so distinct receipts come out of plain sums instead of COUNT(DISTINCT), and one
# pass serves the product, category and store x age-group totals. Portable SQL (SQLite 3.28+
# and PostgreSQL); the amount is summed in integer cents, exact on both.
_CELLS_SQL = f"""
SELECT store_id, age_code, product_id,
       SUM(CASE WHEN receipt_id = prev_receipt AND product_id = prev_product THEN 0 ELSE 1 END)
           AS receipts,
       SUM(CASE WHEN receipt_id = prev_receipt AND category_no = prev_category THEN 0 ELSE 1 END)
           AS category_receipts,
       SUM(CASE WHEN receipt_id = prev_receipt THEN 0 ELSE 1 END) AS group_receipts,
       COUNT(*) AS lines,
       SUM(quantity) AS items,
       SUM(cents) AS revenue_cents
FROM (
    SELECT r.store_id AS store_id, e.age_code AS age_code, l.receipt_id AS receipt_id,
           c.category_no AS category_no, l.product_id AS product_id, l.quantity AS quantity,
           CAST(ROUND(l.amount * 100) AS INTEGER) AS cents,
           LAG(l.receipt_id) OVER w AS prev_receipt,
           LAG(c.category_no) OVER w AS prev_category,
           LAG(l.product_id) OVER w AS prev_product
    FROM receipts r
    JOIN receipt_lines l ON l.receipt_id = r.receipt_id
    JOIN {CATEGORIES_TEMP} c ON c.product_id = l.product_id
    LEFT JOIN {ESTIMATES_TEMP} e ON e.receipt_id = r.receipt_id
    WHERE r.ts >= :start AND r.ts < :end
    WINDOW w AS (ORDER BY l.receipt_id, c.category_no, l.product_id)
) day_lines
GROUP BY store_id, age_code, product_id
"""

_RESTRICTED_SQL = f"""
INSERT INTO {RESTRICTED_TEMP} (receipt_id)
SELECT DISTINCT l.receipt_id
FROM receipt_lines l
JOIN products p ON p.product_id = l.product_id
JOIN receipts r ON r.receipt_id = l.receipt_id
WHERE p.age_restricted = :restricted AND r.ts >= :start AND r.ts < :end
"""

_RESTRICTED_SALES_SQL = f"""
SELECT r.store_id, r.cashier_id, COUNT(*) AS alcohol_sales, COUNT(e.age) AS with_age,
       SUM(CASE WHEN e.age < :threshold THEN 1 ELSE 0 END) AS flagged
FROM {RESTRICTED_TEMP} x
JOIN receipts r ON r.receipt_id = x.receipt_id
LEFT JOIN {ESTIMATES_TEMP} e ON e.receipt_id = x.receipt_id
GROUP BY r.store_id, r.cashier_id
ORDER BY r.store_id, r.cashier_id
"""

_FLAGGED_SQL = f"""
SELECT r.receipt_id, r.store_id, r.cashier_id, r.ts, e.age, r.id_checked
FROM {RESTRICTED_TEMP} x
JOIN receipts r ON r.receipt_id = x.receipt_id
JOIN {ESTIMATES_TEMP} e ON e.receipt_id = x.receipt_id
WHERE e.age < :threshold
ORDER BY r.receipt_id
"""


@dataclass(frozen=True)
class DayAggregates:
    """What the database computed for one day, given the day's estimates.

    `cells`: one row per store x age group x product sold: store_id, store_name, age_group,
    category, product_id, product_name, age_restricted, receipts (distinct receipts with the
    product), category_receipts, group_receipts, items, revenue. category_receipts counts each
    receipt once per category, at one of its products, so summing it over a category's
    products gives that category's distinct receipts; group_receipts does the same for the
    store x age group as a whole; lines counts receipt lines. Unsuppressed: for the
    restricted side and for rolling up.

    `restricted_sales`: per store x cashier, receipts with an age-restricted product
    (alcohol_sales), how many of them have an age estimate (with_age) and how many of those
    are under the threshold (flagged).

    `flagged`: those flagged receipts one by one: receipt_id, store_id, cashier_id, ts, age,
    id_checked.
    """

    cells: pd.DataFrame
    restricted_sales: pd.DataFrame
    flagged: pd.DataFrame


def aggregate_day(
    engine: sa.Engine,
    day: dt.date,
    estimates: pd.DataFrame,
    *,
    challenge_age: float,
    unknown: str = "unknown",
) -> DayAggregates:
    """Join `day`'s purchases with `estimates` (receipt_id, age_group, age) in the database.

    Receipts without an estimate count as age group `unknown`. The estimates travel into a
    temporary table (COPY on PostgreSQL, executemany elsewhere) and everything else happens
    in one transaction on one connection, which drops the temporary tables again.
    """
    frame, labels = _estimate_codes(estimates)
    start, end = day_bounds(day)
    with engine.begin() as conn:
        _create_day_temps(conn)
        _upload_estimates(conn, frame)
        conn.execute(sa.text(_RESTRICTED_SQL), {"restricted": True, "start": start, "end": end})
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ANALYZE {ESTIMATES_TEMP}")
            conn.exec_driver_sql(f"ANALYZE {CATEGORIES_TEMP}")
            conn.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
        cells = _read_large(conn, _CELLS_SQL, {"start": start, "end": end}, CELL_DTYPES)
        threshold = {"threshold": float(challenge_age)}
        sales = _frame(conn.execute(sa.text(_RESTRICTED_SALES_SQL), threshold).all(),
                       RESTRICTED_SALES_DTYPES)
        flagged = _frame(conn.execute(sa.text(_FLAGGED_SQL), threshold).all(), FLAGGED_DTYPES)
        stores = dict(conn.execute(sa.select(Store.store_id, Store.name)).all())
        products = pd.DataFrame(
            conn.execute(sa.select(Product.product_id, Product.name, Product.category,
                                   Product.age_restricted)).all(),
            columns=["product_id", "product_name", "category", "age_restricted"])
        _drop_day_temps(conn)
    return DayAggregates(_named_cells(cells, labels, unknown, stores, products), sales, flagged)


def _estimate_codes(estimates: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """receipt_id, age_code (index into the returned labels; NA for no group), age."""
    missing = [c for c in ("receipt_id", "age_group", "age") if c not in estimates.columns]
    if missing:
        raise EstimatesError(f"estimates lack column(s): {', '.join(missing)}")
    frame = estimates.dropna(subset=["receipt_id"])
    duplicated = frame["receipt_id"].duplicated()
    if duplicated.any():
        ids = frame.loc[duplicated, "receipt_id"].unique()[:5].tolist()
        raise EstimatesError(f"several estimates for receipt(s) {ids}")
    groups = frame["age_group"]
    if isinstance(groups.dtype, pd.CategoricalDtype):
        labels = [str(c) for c in groups.cat.categories]
        codes = groups.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(groups.astype(object), sort=True)
        labels = [str(u) for u in uniques]
    codes_series = pd.Series(codes, index=frame.index, dtype="Int64")
    out = pd.DataFrame({
        "receipt_id": frame["receipt_id"].astype("int64"),
        "age_code": codes_series.mask(codes_series < 0).astype("Int16"),
        "age": pd.to_numeric(frame["age"], errors="coerce").astype("float64"),
    })
    return out.reset_index(drop=True), labels


def _create_day_temps(conn: sa.Connection) -> None:
    _drop_day_temps(conn)  # left over on this pooled connection by an interrupted run
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {ESTIMATES_TEMP} "
                         "(receipt_id BIGINT, age_code SMALLINT, age DOUBLE PRECISION)")
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {RESTRICTED_TEMP} (receipt_id BIGINT)")
    # Categories as small numbers: the line sort compares numbers, not collated text.
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {CATEGORIES_TEMP} "
                         "(product_id INTEGER, category_no INTEGER)")
    conn.exec_driver_sql(f"INSERT INTO {CATEGORIES_TEMP} (product_id, category_no) "
                         "SELECT product_id, DENSE_RANK() OVER (ORDER BY category) FROM products")


def _drop_day_temps(conn: sa.Connection) -> None:
    for name in (ESTIMATES_TEMP, RESTRICTED_TEMP, CATEGORIES_TEMP):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def _upload_estimates(conn: sa.Connection, frame: pd.DataFrame) -> None:
    """COPY on PostgreSQL (millions of rows in seconds); executemany elsewhere."""
    if conn.dialect.name != "postgresql":
        table = sa.table(ESTIMATES_TEMP, sa.column("receipt_id"), sa.column("age_code"),
                         sa.column("age"))
        _insert(conn, table, frame)
        return
    dbapi = conn.connection.driver_connection
    sql = f"COPY {ESTIMATES_TEMP} (receipt_id, age_code, age) FROM STDIN"
    with dbapi.cursor() as cursor, cursor.copy(sql) as copy:
        for first in range(0, len(frame), COPY_CHUNK):
            block = io.StringIO()
            frame.iloc[first : first + COPY_CHUNK].to_csv(
                block, sep="\t", header=False, index=False, na_rep="\\N")
            copy.write(block.getvalue())


def _read_large(conn: sa.Connection, sql: str, params: Mapping[str, object],
                dtypes: Mapping[str, str]) -> pd.DataFrame:
    """A possibly large result as a typed frame, without a Python object per value.

    PostgreSQL: COPY (query) TO STDOUT as CSV, parsed by pandas' C reader (a million rows
    take seconds less than fetching tuples). Elsewhere: fetched in chunks, typed per chunk.
    """
    if conn.dialect.name == "postgresql":
        buffer = io.BytesIO()
        query = _PARAM.sub(r"%(\1)s", sql)
        copy_sql = f"COPY ({query}) TO STDOUT (FORMAT csv)"
        with conn.connection.driver_connection.cursor() as cursor, cursor.copy(
                copy_sql, dict(params)) as copy:
            for block in copy:
                buffer.write(block)
        buffer.seek(0)
        if not buffer.getbuffer().nbytes:
            return _frame([], dtypes)
        return pd.read_csv(buffer, header=None, names=list(dtypes), dtype=dict(dtypes))
    result = conn.execute(sa.text(sql), params, execution_options={"yield_per": FETCH_CHUNK})
    frames = [_frame(rows, dtypes) for rows in result.partitions(FETCH_CHUNK)]
    return pd.concat(frames, ignore_index=True) if frames else _frame([], dtypes)


def _named_cells(cells: pd.DataFrame, labels: Sequence[str], unknown: str,
                 stores: Mapping[int, str], products: pd.DataFrame) -> pd.DataFrame:
    """Codes and ids → labels and names, as categoricals (a few distinct strings each)."""
    codes = cells.pop("age_code")
    categories = list(labels) if unknown in labels else [*labels, unknown]
    filled = codes.fillna(categories.index(unknown)).astype("int64").to_numpy()
    cells.insert(1, "age_group", pd.Categorical.from_codes(filled, categories=categories))
    cells.insert(1, "store_name", cells["store_id"].map(stores).astype("category"))
    info = products.astype({"product_id": "int64"}).set_index("product_id")
    for column in ("category", "product_name"):
        cells[column] = cells["product_id"].map(info[column]).astype("category")
    cells["age_restricted"] = cells["product_id"].map(info["age_restricted"]).astype(bool)
    cells["revenue"] = cells.pop("revenue_cents") / 100.0
    order = ["store_id", "store_name", "age_group", "category", "product_id", "product_name",
             "age_restricted", "receipts", "category_receipts", "group_receipts", "lines",
             "items", "revenue"]
    return cells[order]


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


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
