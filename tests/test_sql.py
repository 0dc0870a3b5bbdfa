"""sql/: schema, day queries, runs, quarantine, URL redaction and retries, on real databases."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from sql import engine as engine_module
from sql.engine import (
    DatabaseUnavailable,
    DatabaseUrlError,
    make_engine,
    redact_url,
    with_retries,
)
from sql.queries import (
    UnknownRun,
    UnknownTable,
    create_schema,
    delete_photos_for_day,
    finish_run,
    insert_frame,
    latest_runs,
    photos_for_day,
    purchase_lines_for_day,
    replace_quarantine,
    start_run,
)
from sql.schema import Quarantine

DAY = dt.date(2024, 5, 17)
HOSTILE = "O'Brien\"; DROP TABLE stores;--"


def _shop(engine, store_name: str = "Northgate", product_name: str = "Lager 6-pack") -> None:
    insert_frame(engine, "stores", pd.DataFrame({"store_id": [1], "name": [store_name]}))
    insert_frame(engine, "cashiers", pd.DataFrame(
        {"cashier_id": [101], "store_id": [1], "name": ["Sam"]}))
    insert_frame(engine, "products", pd.DataFrame({
        "product_id": [1, 2],
        "name": [product_name, "Milk 1l"],
        "category": ["beer", "dairy"],
        "age_restricted": [True, False],
    }))


def _receipts(engine, stamps: list[dt.datetime], first_id: int = 1) -> list[int]:
    ids = list(range(first_id, first_id + len(stamps)))
    insert_frame(engine, "receipts", pd.DataFrame({
        "receipt_id": ids,
        "store_id": 1,
        "cashier_id": 101,
        "ts": stamps,
        "id_checked": [True if i % 2 else None for i in ids],
    }))
    insert_frame(engine, "receipt_lines", pd.DataFrame({
        "receipt_id": [i for i in ids for _ in (1, 2)],
        "line_no": [n for _ in ids for n in (1, 2)],
        "product_id": [p for _ in ids for p in (1, 2)],
        "quantity": [n for _ in ids for n in (2, 1)],
        "amount": [a for _ in ids for a in (11.98, 1.15)],
    }))
    return ids


def test_schema_has_tables_and_day_indexes(engine):
    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) >= {
        "stores", "cashiers", "products", "receipts", "receipt_lines",
        "checkout_photos", "runs", "quarantine",
    }
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("receipts")}
    assert ("ts",) in indexed
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("checkout_photos")}
    assert ("taken_at",) in indexed
    pk = inspector.get_pk_constraint("receipt_lines")["constrained_columns"]
    assert pk == ["receipt_id", "line_no"]
    create_schema(engine)  # a second run changes nothing and does not fail


def test_purchase_lines_for_day_takes_exactly_the_half_open_day(engine):
    _shop(engine)
    start = dt.datetime(2024, 5, 17)
    stamps = [
        start - dt.timedelta(microseconds=1),  # previous day
        start,  # first instant of the day
        start + dt.timedelta(hours=13, minutes=5),
        start + dt.timedelta(days=1) - dt.timedelta(microseconds=1),  # last instant
        start + dt.timedelta(days=1),  # next day
    ]
    ids = _receipts(engine, stamps)

    lines = purchase_lines_for_day(engine, DAY)

    assert lines["receipt_id"].unique().tolist() == ids[1:4]
    assert len(lines) == 6
    assert lines["ts"].tolist() == [pd.Timestamp(s) for s in stamps[1:4] for _ in (1, 2)]
    first = lines.iloc[0]
    assert (first["store_name"], first["product_name"], first["category"]) == (
        "Northgate", "Lager 6-pack", "beer")
    assert lines["amount"].tolist() == [11.98, 1.15] * 3
    assert lines["quantity"].sum() == 9
    assert lines["age_restricted"].tolist() == [True, False] * 3
    # receipt 2 has id_checked NULL, receipt 3 True
    assert lines["id_checked"].isna().tolist() == [True, True, False, False, True, True]


def test_purchase_lines_dtypes_are_the_same_on_every_backend(engine):
    _shop(engine)
    _receipts(engine, [dt.datetime(2024, 5, 17, 9, 30)])
    for lines in (purchase_lines_for_day(engine, DAY),
                  purchase_lines_for_day(engine, DAY + dt.timedelta(days=3))):  # empty
        dtypes = {c: str(t) for c, t in lines.dtypes.items()}
        assert dtypes == {
            "receipt_id": "int64", "store_id": "int64", "store_name": "str",
            "cashier_id": "int64", "ts": "datetime64[us]", "id_checked": "boolean",
            "product_id": "int64", "product_name": "str", "category": "str",
            "age_restricted": "bool", "quantity": "int64", "amount": "float64",
        }


def test_day_query_filters_the_indexed_column_with_bound_parameters(sqlite_url):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    statements: list[tuple[str, object]] = []
    sa.event.listen(engine, "before_cursor_execute",
                    lambda conn, cur, stmt, params, ctx, many: statements.append((stmt, params)))

    purchase_lines_for_day(engine, DAY)

    sql, params = statements[-1]
    assert "date(" not in sql.lower()
    assert "receipts.ts >= ?" in sql and "receipts.ts < ?" in sql
    assert "2024-05-17 00:00:00" in str(params) and "2024-05-18 00:00:00" in str(params)
    with engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
    assert "ix_receipts_ts" in plan


def test_photos_for_day_in_photo_order_with_optional_receipt(engine):
    _shop(engine)
    _receipts(engine, [dt.datetime(2024, 5, 17, 10)])
    insert_frame(engine, "checkout_photos", pd.DataFrame({
        "photo_id": [30, 10, 20, 40],
        "receipt_id": [1, None, 1, None],
        "path": ["a/30.jpg", "a/10.jpg", "a/20.jpg", "b/40.jpg"],
        "taken_at": pd.to_datetime([
            "2024-05-17 23:59:59", "2024-05-17 00:00:00", "2024-05-17 10:00:01",
            "2024-05-18 00:00:00",
        ]),
    }))

    photos = photos_for_day(engine, DAY)

    assert photos["photo_id"].tolist() == [10, 20, 30]
    assert photos["path"].tolist() == ["a/10.jpg", "a/20.jpg", "a/30.jpg"]
    assert photos["receipt_id"].isna().tolist() == [True, False, False]
    assert str(photos["receipt_id"].dtype) == "Int64"
    assert str(photos["taken_at"].dtype) == "datetime64[us]"


def test_delete_photos_for_day_removes_only_that_day(engine):
    insert_frame(engine, "checkout_photos", pd.DataFrame({
        "photo_id": [1, 2, 3],
        "receipt_id": [None, None, None],
        "path": ["a.jpg", "b.jpg", "c.jpg"],
        "taken_at": pd.to_datetime(
            ["2024-05-16 23:59:59", "2024-05-17 00:00:00", "2024-05-17 23:59:59"]),
    }))
    assert delete_photos_for_day(engine, DAY) == 2
    assert photos_for_day(engine, DAY).empty
    assert photos_for_day(engine, DAY - dt.timedelta(days=1))["photo_id"].tolist() == [1]


def test_hostile_names_round_trip_as_data(engine):
    _shop(engine, store_name=HOSTILE, product_name="Bob's \"best\" ale; --")
    _receipts(engine, [dt.datetime(2024, 5, 17, 12)])

    lines = purchase_lines_for_day(engine, DAY)

    assert lines["store_name"].iloc[0] == HOSTILE
    assert lines["product_name"].iloc[0] == "Bob's \"best\" ale; --"
    assert "stores" in sa.inspect(engine).get_table_names()


def test_runs_are_recorded_and_listed_newest_first(engine):
    start_run(engine, "run-1", "nightly", DAY, "resnet50-v1")
    time.sleep(0.01)
    start_run(engine, "run-2", "rescore", DAY + dt.timedelta(days=1), "resnet50-v2")
    finish_run(engine, "run-1", "ok", {"photos": 120, "faces": 97, "bins": "0-17,18+"})

    runs = latest_runs(engine, limit=10)

    assert runs["run_id"].tolist() == ["run-2", "run-1"]
    done = runs.set_index("run_id").loc["run-1"]
    assert done["status"] == "ok"
    assert done["counts"] == {"photos": 120, "faces": 97, "bins": "0-17,18+"}
    assert done["day"] == DAY
    assert done["finished_at"] >= done["started_at"]
    running = runs.set_index("run_id").loc["run-2"]
    assert running["status"] == "running" and pd.isna(running["finished_at"])
    assert latest_runs(engine, limit=1)["run_id"].tolist() == ["run-2"]
    with pytest.raises(UnknownRun, match="nope"):
        finish_run(engine, "nope", "ok", {})


def _quarantined(engine) -> list[tuple]:
    q = Quarantine
    query = sa.select(q.run_id, q.day, q.photo_id, q.path, q.reason).order_by(q.path)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query)]


def test_replace_quarantine_replaces_only_that_day_in_one_transaction(engine):
    other = DAY + dt.timedelta(days=1)
    first = pd.DataFrame({"photo_id": [1, 2], "path": ["p/1.jpg", "p/2.jpg"],
                          "reason": ["truncated", "no_face"], "detail": ["", ""]})
    assert replace_quarantine(engine, "r1", DAY, first) == 2
    replace_quarantine(engine, "r1", other, first.iloc[:1])

    second = pd.DataFrame({"photo_id": [None], "path": ["p/9.jpg"],
                           "reason": ["missing"], "detail": ["gone"]})
    assert replace_quarantine(engine, "r2", DAY, second) == 1
    assert _quarantined(engine) == [
        ("r1", other, 1, "p/1.jpg", "truncated"),
        ("r2", DAY, None, "p/9.jpg", "missing"),
    ]

    broken = pd.DataFrame({"photo_id": [3], "path": [None], "reason": ["x"], "detail": [""]})
    with pytest.raises(sa.exc.IntegrityError):  # path is NOT NULL: the insert fails ...
        replace_quarantine(engine, "r3", DAY, broken)
    assert len(_quarantined(engine)) == 2  # ... and the delete was rolled back with it


def test_insert_frame_refuses_unknown_tables_and_columns(engine):
    with pytest.raises(UnknownTable, match="no table named 'shops'"):
        insert_frame(engine, "shops", pd.DataFrame({"x": [1]}))
    with pytest.raises(UnknownTable, match="colour"):
        insert_frame(engine, "stores", pd.DataFrame({"store_id": [1], "colour": ["red"]}))


def test_sqlite_engine_enforces_foreign_keys_and_uses_wal(sqlite_url):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(sa.exc.IntegrityError):
        insert_frame(engine, "cashiers", pd.DataFrame(
            {"cashier_id": [1], "store_id": [999], "name": ["ghost"]}))


@pytest.mark.parametrize(("url", "hidden"), [
    ("postgresql+psycopg://shop:s3cr3t@db.example:5432/shop", "s3cr3t"),
    ("postgresql+psycopg://shop:p%40ss@db/shop", "p%40ss"),
    ("postgresql+psycopg://db/shop?user=shop&password=hunter2", "hunter2"),
    ("not a url, password=hunter2 host=db", "hunter2"),
    ("weird://shop:s3cr3t@db", "s3cr3t"),
])
def test_redact_url_hides_passwords(url, hidden):
    redacted = redact_url(url)
    assert hidden not in redacted
    assert "***" in redacted


def test_redact_url_keeps_the_rest():
    assert redact_url("postgresql+psycopg://shop:pw@db:5432/shop") == (
        "postgresql+psycopg://shop:***@db:5432/shop")
    assert redact_url("sqlite:///var/demo/shop.db") == "sqlite:///var/demo/shop.db"


def test_make_engine_reports_bad_urls_without_password():
    with pytest.raises(DatabaseUrlError) as err:
        make_engine("nosuchdb://shop:s3cr3t@db/shop")
    assert "s3cr3t" not in str(err.value) and "***" in str(err.value)


def test_with_retries_gives_up_on_an_unreachable_server_with_backoff(monkeypatch):
    url = "postgresql+psycopg://shop:s3cr3t@127.0.0.1:1/shop"
    engine = make_engine(url)
    delays: list[float] = []
    monkeypatch.setattr(engine_module.time, "sleep", delays.append)
    calls = []

    def connect() -> None:
        calls.append(1)
        with engine.connect():
            pass

    with pytest.raises(DatabaseUnavailable) as err:
        with_retries(connect, attempts=3, base_delay=0.05)

    message = str(err.value)
    assert len(calls) == 3
    assert delays == [0.05, 0.1]
    assert "after 3 attempts" in message
    assert "s3cr3t" not in message and "\n" not in message
    assert "refused" in message.lower()


def test_with_retries_does_not_wait_for_a_database_that_does_not_exist(pg_server, monkeypatch):
    url = sa.engine.make_url(pg_server).set(database="ageseg_no_such_db", password="s3cr3t")
    engine = make_engine(url.render_as_string(hide_password=False))
    monkeypatch.setattr(engine_module.time, "sleep", lambda s: pytest.fail("should not retry"))

    def connect() -> None:
        with engine.connect():
            pass

    with pytest.raises(DatabaseUnavailable, match="ageseg_no_such_db") as err:
        with_retries(connect)
    assert "s3cr3t" not in str(err.value) and "does not exist" in str(err.value)


def test_with_retries_really_waits_and_then_succeeds(tmp_path):
    folder = tmp_path / "later"
    engine = make_engine(f"sqlite:///{folder / 'shop.db'}")
    calls = []

    def count_stores() -> int:
        calls.append(time.monotonic())
        if len(calls) == 3:
            folder.mkdir()  # the "server" comes back before the third attempt
        with engine.connect() as conn:
            return conn.exec_driver_sql("SELECT 1").scalar()

    assert with_retries(count_stores, attempts=4, base_delay=0.02) == 1
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.02 and calls[2] - calls[1] >= 0.04


def test_with_retries_does_not_retry_errors_that_will_repeat(sqlite_url):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    insert_frame(engine, "stores", pd.DataFrame({"store_id": [1], "name": ["a"]}))
    calls = []

    def duplicate() -> None:
        calls.append(1)
        insert_frame(engine, "stores", pd.DataFrame({"store_id": [1], "name": ["b"]}))

    with pytest.raises(sa.exc.IntegrityError):
        with_retries(duplicate, attempts=4, base_delay=0.01)
    assert len(calls) == 1

    def missing_table() -> None:
        calls.append(1)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT * FROM no_such_table")

    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        with_retries(missing_table, attempts=4, base_delay=0.01)
    assert len(calls) == 2


def test_with_retries_rejects_zero_attempts():
    with pytest.raises(ValueError, match="attempts"):
        with_retries(lambda: None, attempts=0)


def test_start_run_is_retry_safe_and_abandons_killed_runs(db_url):
    import datetime as dt

    import pandas as pd

    from sql.engine import make_engine
    from sql.queries import create_schema, start_run

    engine = make_engine(db_url)
    create_schema(engine)
    day = dt.date(2026, 11, 28)
    start_run(engine, "killed", "nightly", day, "v1")  # a run that was kill -9'd
    start_run(engine, "other-day", "nightly", day + dt.timedelta(days=1), "v1")
    start_run(engine, "next", "nightly", day, "v1")
    start_run(engine, "next", "nightly", day, "v1")  # a retry after a lost COMMIT
    runs = pd.read_sql("select run_id, status from runs order by run_id", engine)
    assert runs.values.tolist() == [["killed", "abandoned"], ["next", "running"],
                                    ["other-day", "running"]]
    engine.dispose()


def test_interrupted_runs_are_only_those_of_the_lock_just_taken(db_url):
    import datetime as dt

    import pandas as pd

    from sql.engine import make_engine
    from sql.queries import create_schema, finish_run, mark_interrupted, start_run

    engine = make_engine(db_url)
    create_schema(engine)
    day = dt.date(2026, 11, 28)
    here, there = "host-a:/run/ageseg/ageseg.lock", "host-b:/run/ageseg/ageseg.lock"
    start_run(engine, "killed", "rescore", day - dt.timedelta(days=3), "v1", here)
    start_run(engine, "finished", "nightly", day - dt.timedelta(days=2), "v1", here)
    finish_run(engine, "finished", "ok", {"photos": 1})
    start_run(engine, "elsewhere", "nightly", day, "v1", there)  # alive on another machine
    start_run(engine, "old-version", "nightly", day - dt.timedelta(days=1), "v1")
    assert mark_interrupted(engine, here) == ["killed"]
    assert mark_interrupted(engine, here) == []
    start_run(engine, "next", "nightly", day, "v1", here)  # the same day as "elsewhere"
    runs = pd.read_sql("select run_id, status from runs order by run_id", engine)
    assert runs.values.tolist() == [["elsewhere", "running"], ["finished", "ok"],
                                    ["killed", "interrupted"], ["next", "running"],
                                    ["old-version", "running"]]
    engine.dispose()
