"""The night's analytics step on a large chain's day in PostgreSQL, next to PostgreSQL's own
GROUP BY over the same rows, measured in one run.

- builds (or reuses) a database `ageseg_bench` holding one day of N receipts with ~10 lines
  each (generated inside PostgreSQL with generate_series), and an age estimate for 95% of
  the receipts (table `bench_estimates`, what the scoring step would have produced);
  `--lines-per-receipt 5` builds and uses `ageseg_bench_5`, to compare peak memory at half
  the lines;
- (a) our step: analytics.day_tables.build_day_tables — the day's receipts and lines
  streamed in receipt order and counted into cells, sales_by_age_group, affinity counts,
  recommendations over the trailing 28-day window, compliance — in a fresh process, with
  its wall time and peak RSS (ru_maxrss). The window's 27 earlier days are on disk first
  (copies of the day's own counts, written by another process; `--history-days 0` measures
  a first night instead);
- (b) PostgreSQL's own single GROUP BY: store x category sums of quantity and amount over the
  day's lines joined to receipts and products, timed from Python, before and after (a);
- for reference, (c) the same GROUP BY with COUNT(DISTINCT receipt_id), the number
  sales_by_age_group needs.

Usage: python bench/analytics.py [--receipts 2000000] [--stores 200] [--products 1000]
       [--lines-per-receipt 10] [--history-days 27] [--rebuild]
       [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DAY = dt.date(2026, 11, 28)
DB_NAME = "ageseg_bench"

def lines_per_receipt(average: int) -> str:
    """1 .. 2*average-1 lines per receipt, `average` on average."""
    return f"1 + mod(r.receipt_id, {2 * average - 1})::int"


BASELINE_SQL = """
SELECT r.store_id, p.category, SUM(l.quantity), SUM(l.amount)
FROM receipt_lines l
JOIN receipts r ON r.receipt_id = l.receipt_id
JOIN products p ON p.product_id = l.product_id
WHERE r.ts >= :start AND r.ts < :end
GROUP BY r.store_id, p.category
"""
DISTINCT_SQL = BASELINE_SQL.replace("SUM(l.amount)",
                                    "SUM(l.amount), COUNT(DISTINCT l.receipt_id)")

# Run in a fresh process so ru_maxrss is the step's own peak, not this script's. Argument 4
# "history" writes the earlier days of the trailing window instead (in its own process too,
# so that its peak does not count).
STEP_CODE = r"""
import datetime as dt, json, resource, sys, time
from pathlib import Path
import pandas as pd
from analytics.age_groups import AgeBins, assign_age_groups
from analytics.config import NightConfig
from analytics.day_tables import (AFFINITY, COMPLIANCE, COMPLIANCE_SALES, build_day_tables,
                                  read_day_aggregates, read_window, write_day_tables)
from analytics.parquet import write_partitions
from sql.engine import make_engine

url, day, root = sys.argv[1], dt.date.fromisoformat(sys.argv[2]), Path(sys.argv[3])
engine = make_engine(url)
bins = AgeBins.parse("0-17,18-24,25-34,35-44,45-54,55-64,65+")
with engine.connect() as conn:
    rows = conn.exec_driver_sql("SELECT receipt_id, age FROM bench_estimates").all()
estimates = pd.DataFrame(rows, columns=["receipt_id", "age"]).astype(
    {"receipt_id": "int64", "age": "float64"})
del rows
estimates["age_group"] = assign_age_groups(estimates["age"], bins)
estimates = estimates.assign(photo_id=estimates["receipt_id"], face_count=1)
card = {"version": "bench", "metrics": {"val_mae": 5.0}}
options = NightConfig(root / "marketing", root / "restricted", min_cell=10, today=day)
def tables_for(day):
    aggregates = read_day_aggregates(engine, day, estimates, card, options)
    return build_day_tables(day, estimates, aggregates, read_window(day, options), card, options)
if sys.argv[4] == "history":  # copies of the day's own counts, as earlier nights left them
    first = tables_for(day)
    for back in range(1, int(sys.argv[5]) + 1):
        write_partitions([(options.restricted_root, name, frame)
                          for name, frame in first.restricted.items()
                          if name in (AFFINITY, COMPLIANCE, COMPLIANCE_SALES)],
                         day - dt.timedelta(days=back), {"run_id": "history"})
    sys.exit(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
tables = tables_for(day)
step = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
write_day_tables(tables, day, options, {"run_id": "bench"}, "bench")
write = time.perf_counter() - start
print(json.dumps({"step_s": step, "write_s": write, "rss_before_mib": before / 1024,
                  "rss_peak_mib": peak / 1024, "estimates": len(estimates),
                  "rows": {k: len(v) for k, v in {**tables.marketing,
                                                  **tables.restricted}.items()},
                  "counts": tables.counts}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=2_000_000)
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--lines-per-receipt", type=int, default=10,
                        help="Average; another value uses its own database, so that peak "
                             "memory can be compared at two line counts.")
    parser.add_argument("--pg-url", default=os.environ.get(
        "AGESEG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--rebuild", action="store_true", help="Regenerate the data.")
    parser.add_argument("--history-days", type=int, default=27,
                        help="Earlier days of the trailing window on disk before the timed "
                             "step (copies of the day's own counts); 0: a first night.")
    args = parser.parse_args()

    name = DB_NAME if args.lines_per_receipt == 10 else f"{DB_NAME}_{args.lines_per_receipt}"
    url = ensure_database(args.pg_url, name)
    engine = sa.create_engine(url)
    shape = {"receipts": args.receipts, "stores": args.stores, "products": args.products,
             "day": DAY.isoformat()}
    if args.lines_per_receipt != 10:
        shape["lines_per_receipt"] = args.lines_per_receipt
    if args.rebuild or read_shape(engine) != shape:
        seconds = generate(engine, shape)
        print(f"generated the bench day in {seconds:.0f}s")
    with engine.connect() as conn:
        lines = conn.exec_driver_sql("SELECT count(*) FROM receipt_lines").scalar_one()
        estimates = conn.exec_driver_sql("SELECT count(*) FROM bench_estimates").scalar_one()
    print(f"day {DAY}: {args.receipts:,} receipts, {lines:,} lines, {estimates:,} estimates, "
          f"{args.stores} stores, {args.products} products")

    baseline = [time_query(engine, BASELINE_SQL)]
    step = run_step(url, args.history_days)
    baseline.append(time_query(engine, BASELINE_SQL))
    distinct = time_query(engine, DISTINCT_SQL)
    best = min(baseline)
    window = f"{args.history_days + 1}-day window" if args.history_days else "first night"
    print(f"(a) our step (join + summaries + recommendations + compliance; {window}): "
          f"{step['step_s']:.2f}s; peak RSS {step['rss_peak_mib']:.0f} MiB "
          f"({step['rss_before_mib']:.0f} MiB before the step, estimates loaded)")
    print(f"(b) PostgreSQL's own GROUP BY (store x category sums): "
          f"{', '.join(f'{b:.2f}s' for b in baseline)} -> best {best:.2f}s")
    print(f"    ratio (a)/(b): {step['step_s'] / best:.2f}x  (target <= 1.5x)")
    print(f"(c) for reference, the same GROUP BY with COUNT(DISTINCT receipt_id): "
          f"{distinct:.2f}s; (a)/(c) = {step['step_s'] / distinct:.2f}x")
    print(f"    writing the day's Parquet partitions afterwards: {step['write_s']:.2f}s")
    print(f"    rows: {json.dumps(step['rows'])}")


def ensure_database(admin_url: str, name: str) -> str:
    """The bench database's URL, creating the database if it is missing."""
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}).first()
        if not exists:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return sa.engine.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False)


def read_shape(engine: sa.Engine) -> dict | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("bench_info"):
            return None
        row = conn.exec_driver_sql("SELECT shape FROM bench_info").first()
    return json.loads(row[0]) if row else None


def generate(engine: sa.Engine, shape: dict) -> float:
    """Fill the schema with one generated day; seconds taken. All inside PostgreSQL."""
    from sql.queries import create_schema

    started = time.perf_counter()
    with engine.begin() as conn:
        for table in ("bench_info", "bench_estimates", "checkout_photos", "receipt_lines",
                      "receipts", "cashiers", "products", "stores", "quarantine", "runs",
                      "mkt_sales_by_age_group", "mkt_recommendations"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table} CASCADE")
    create_schema(engine)
    start = dt.datetime.combine(DAY, dt.time(8))
    average = shape.get("lines_per_receipt", 10)
    params = {"n": shape["receipts"], "stores": shape["stores"],
              "products": shape["products"], "first": DAY.toordinal() * 10_000_000,
              "start": start}
    steps = [
        "SELECT setseed(0.42)",
        "INSERT INTO stores SELECT s, 'Store ' || s FROM generate_series(1, %(stores)s) s",
        "INSERT INTO cashiers SELECT s * 100 + k, s, 'Cashier ' || s || '-' || k "
        "FROM generate_series(1, %(stores)s) s, generate_series(1, 8) k",
        "INSERT INTO products SELECT p, 'Product ' || p, "
        "CASE mod(p, 40) WHEN 0 THEN 'beer' WHEN 1 THEN 'wine' WHEN 2 THEN 'spirits' "
        "ELSE 'category ' || lpad(mod(p, 40)::text, 2, '0') END, mod(p, 40) < 3 "
        "FROM generate_series(1, %(products)s) p",
        "INSERT INTO receipts SELECT %(first)s + i, 1 + mod(i, %(stores)s), "
        "(1 + mod(i, %(stores)s)) * 100 + 1 + mod(i / %(stores)s, 8), "
        "%(start)s + random() * interval '13 hours', "
        "CASE WHEN random() < 0.5 THEN random() < 0.6 END "
        "FROM generate_series(0, %(n)s - 1) i",
        "INSERT INTO receipt_lines SELECT r.receipt_id, g, p.product_id, 1 + mod(g, 2),"
        " round(mod(p.product_id * 37, 2000) / 100.0 + 0.5, 2) * (1 + mod(g, 2)) "
        f"FROM receipts r, generate_series(1, {lines_per_receipt(average)}) g, "
        "LATERAL (SELECT 1 + floor(random() * %(products)s + g * 0)::int AS product_id) p",
        "CREATE TABLE bench_estimates AS SELECT receipt_id, "
        "round((10 + random() * 70)::numeric, 1)::float8 AS age FROM receipts "
        "WHERE random() < 0.95",
        "CREATE TABLE bench_info (shape text)",
    ]
    with engine.begin() as conn:
        dbapi = conn.connection.driver_connection
        with dbapi.cursor() as cursor:
            # Skip per-row foreign-key triggers while loading generated, consistent rows.
            cursor.execute("SET LOCAL session_replication_role = replica")
            for sql in steps:
                cursor.execute(sql, params if "%(" in sql else None)
            cursor.execute("INSERT INTO bench_info VALUES (%(shape)s)",
                           {"shape": json.dumps(shape)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - started


def time_query(engine: sa.Engine, sql: str) -> float:
    start_ts = dt.datetime.combine(DAY, dt.time())
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(sa.text(sql), {"start": start_ts,
                                    "end": start_ts + dt.timedelta(days=1)}).all()
        return time.perf_counter() - started


def run_step(url: str, history: int) -> dict:
    """The step in a fresh process, after `history` earlier days were written by another."""
    with tempfile.TemporaryDirectory() as tmp:
        if history:
            _python_step(url, tmp, "history", str(history))
        out = _python_step(url, tmp, "step")
    return json.loads(out.strip().splitlines()[-1])


def _python_step(url: str, root: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-c", STEP_CODE, url, DAY.isoformat(), root, *args],
                         cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"the step failed:\n{out.stderr[-3000:]}")
    return out.stdout


if __name__ == "__main__":
    main()
