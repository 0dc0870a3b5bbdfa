"""The till data read from a read-only source, the job's own tables in another database.

On the local PostgreSQL: a till with its own table and column names (cents, timestamps
with time zone) in schema `pos`, the README's example views (sql/examples/till_views.sql)
over it in schema `till`, and a role that may only SELECT those views. `nightly`,
`rescore` and `publish` run with the job's tables in a SQLite file and in a second
PostgreSQL database, and give the same rows as today's one-database run on the same data.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from jobs.cli import cli
from tests.shop import DAY, fill_shop
from tests.test_startup_checks import _cli

ROOT = Path(__file__).resolve().parents[1]
VIEWS = (ROOT / "sql" / "examples" / "till_views.sql").read_text()

# The shop's tables (tests/shop.py) as a till would keep them: other names, money in cents,
# times with a time zone, the ID check as 'Y'/'N'. The views must undo all of it.
_TILL = """
CREATE SCHEMA pos;
CREATE TABLE pos.branch AS SELECT store_id AS branch_no, name::text AS branch_name
    FROM public.stores;
CREATE TABLE pos.operator AS SELECT cashier_id AS operator_no, store_id AS branch_no,
    name::text AS display_name FROM public.cashiers;
CREATE TABLE pos.article AS SELECT product_id::bigint AS article_no,
    name::text AS description, category::text AS department,
    (CASE WHEN age_restricted THEN 18 END)::smallint AS min_age FROM public.products;
CREATE TABLE pos.sale AS SELECT receipt_id AS sale_id, store_id AS branch_no,
    cashier_id AS operator_no, ts AT TIME ZONE 'Europe/London' AS sold_at,
    (CASE WHEN id_checked THEN 'Y' WHEN NOT id_checked THEN 'N' END)::char(1) AS age_verified
    FROM public.receipts;
CREATE TABLE pos.sale_item AS SELECT receipt_id AS sale_id, line_no AS item_seq,
    product_id::bigint AS article_no, quantity AS qty,
    round(amount * 100)::bigint AS line_total_cents FROM public.receipt_lines;
CREATE TABLE pos.camera_frame AS SELECT photo_id AS frame_id, receipt_id AS sale_id,
    path::text AS file_path, taken_at AT TIME ZONE 'Europe/London' AS captured_at
    FROM public.checkout_photos;
"""


@pytest.fixture
def till(pg_server, pg_url, tmp_path):
    """A filled day in `pg_url` (public schema, as today), the same day as a till in `pos`
    with the example views in `till`, and a role with SELECT on the views only.
    Yields (superuser URL, read-only role's URL)."""
    fill_shop(pg_url, tmp_path / "photos", n_receipts=26)
    role = f"ageseg_ro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(_TILL)
        conn.exec_driver_sql(VIEWS.replace("ageseg_ro", role))
    try:
        yield pg_url, sa.engine.make_url(pg_url).set(username=role).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


@pytest.fixture
def second_pg(pg_server) -> str:
    """Another empty PostgreSQL database: the job's own, beside the till's."""
    name = f"ageseg_job_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.engine.make_url(pg_server).set(database=name).render_as_string(
            hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _invoke(tmp_path: Path, out: Path, model: Path, *args: str):
    base = ["--photo-root", str(tmp_path / "photos"), "--model", str(model),
            "--output-root", str(out / "marketing"), "--restricted-root", str(out / "restricted"),
            "--lock-dir", str(out / "locks"), "--min-cell", "3", "--batch-size", "8"]
    result = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _outputs(out: Path) -> dict[str, pd.DataFrame]:
    return {str(p.relative_to(out)): pd.read_parquet(p) for p in sorted(out.rglob("*.parquet"))}


def _assert_same_outputs(expected: Path, got: Path) -> None:
    want, have = _outputs(expected), _outputs(got)
    assert sorted(have) == sorted(want) and len(want) >= 6
    for name, frame in want.items():
        pd.testing.assert_frame_equal(have[name], frame, obj=name)


def _published(url: str) -> dict[str, pd.DataFrame]:
    """The mkt_* tables as plain values, whichever database holds them."""
    engine = sa.create_engine(url)
    out = {}
    for table in ("mkt_sales_by_age_group", "mkt_recommendations"):
        frame = pd.read_sql(f"select * from {table}", engine).drop(columns="id", errors="ignore")
        frame["day"] = frame["day"].astype(str).str[:10]
        for column in ("revenue", "share_of_store_revenue", "share", "lift", "lift_low"):
            if column in frame:
                frame[column] = frame[column].astype(float)
        keys = [c for c in frame.columns if c not in ("revenue",)]
        out[table] = frame.sort_values(keys).reset_index(drop=True)
    engine.dispose()
    assert len(out["mkt_sales_by_age_group"])
    return out


def _statuses(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("select status from runs")).scalars().all()
    engine.dispose()
    return statuses


def test_till_views_read_only_role_and_own_databases_give_todays_outputs(
        till, second_pg, tmp_path, tiny_model_path):
    shop_url, ro_url = till
    day = ("--date", DAY.isoformat())
    # Today: one database for everything.
    _invoke(tmp_path, tmp_path / "one", tiny_model_path, "--db-url", shop_url, "nightly", *day)
    _invoke(tmp_path, tmp_path / "one", tiny_model_path, "--db-url", shop_url, "publish", *day)
    source = ["--source-url", ro_url, "--source-schema", "till"]

    # The job's tables in a SQLite file: init-db creates only those; nightly, then publish.
    job_sqlite = f"sqlite:///{tmp_path / 'job.db'}"
    two = tmp_path / "two"
    for args in (["init-db"], ["nightly", *day], ["publish", *day]):
        _invoke(tmp_path, two, tiny_model_path, "--db-url", job_sqlite, *source, *args)
    _assert_same_outputs(tmp_path / "one", two)
    _frames_equal(_published(job_sqlite), _published(shop_url))
    tables = set(sa.inspect(sa.create_engine(job_sqlite)).get_table_names())
    assert "runs" in tables and "receipts" not in tables and _statuses(job_sqlite) == ["ok"]

    # The job's tables in a second PostgreSQL database: rescore, then publish.
    three = tmp_path / "three"
    for args in (["init-db"], ["rescore", "--from", DAY.isoformat(), "--to", DAY.isoformat()],
                 ["publish", *day]):
        _invoke(tmp_path, three, tiny_model_path, "--db-url", second_pg, *source, *args)
    _assert_same_outputs(tmp_path / "one", three)
    _frames_equal(_published(second_pg), _published(shop_url))
    assert _statuses(second_pg) == ["ok"]
    quarantined = "select path, reason from quarantine order by path"
    assert (pd.read_sql(quarantined, sa.create_engine(second_pg)).values.tolist()
            == pd.read_sql(quarantined, sa.create_engine(shop_url)).values.tolist() != [])
    # The till itself got nothing: its runs are the one-database run's only.
    assert _statuses(shop_url) == ["ok"]


def _frames_equal(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> bool:
    assert sorted(got) == sorted(want)
    for name, frame in want.items():
        pd.testing.assert_frame_equal(got[name], frame, check_dtype=False, obj=name)
    return True


def test_writes_through_the_source_connection_fail(till):
    """The read-only guard is the server's, not our good manners: even a superuser's source
    session cannot write, through SQLAlchemy or through the ADBC bulk reader."""
    from sql.day_reads import _AdbcReader
    from sql.engine import make_engine

    shop_url, _ = till
    source = make_engine(shop_url, read_only=True, search_path=("till", "public"))
    try:
        with pytest.raises(sa.exc.InternalError, match="read-only transaction"), \
                source.begin() as conn:
            conn.exec_driver_sql("DELETE FROM public.receipt_lines")
        with pytest.raises(sa.exc.DatabaseError, match="read-only transaction"), \
                _AdbcReader.open(source, DAY) as reader:
            reader._run("CREATE TABLE public.leak (i int)")
        with source.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from receipt_lines").scalar() > 0
    finally:
        source.dispose()


def test_sqlite_source_is_read_only(sqlite_url, tmp_path):
    from sql.engine import make_engine

    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    source = make_engine(sqlite_url, read_only=True)
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"), source.begin() as conn:
            conn.exec_driver_sql("DELETE FROM receipt_lines")
        with source.connect() as conn:
            assert conn.exec_driver_sql("select count(*) from receipt_lines").scalar() > 0
    finally:
        source.dispose()


_BAD_VIEWS = """
CREATE SCHEMA bad;
CREATE VIEW bad.products AS SELECT article_no AS product_id, description AS name,
    department AS category, coalesce(min_age, 0) >= 18 AS age_restricted FROM pos.article;
CREATE VIEW bad.receipts AS SELECT sale_id AS receipt_id, branch_no AS store_id,
    operator_no AS cashier_id, sold_at AT TIME ZONE 'Europe/London' AS ts FROM pos.sale;
CREATE VIEW bad.receipt_lines AS SELECT sale_id AS receipt_id, article_no AS product_id,
    qty AS quantity, line_total_cents / 100.0 AS amount FROM pos.sale_item;
CREATE VIEW bad.checkout_photos AS SELECT frame_id AS photo_id, sale_id AS receipt_id,
    file_path AS path, captured_at AS taken_at FROM pos.camera_frame;
"""


def test_check_source_names_every_problem_in_one_line_before_tensorflow(
        till, tmp_path, tiny_model_path):
    shop_url, ro_url = till
    admin = sa.create_engine(shop_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(_BAD_VIEWS)
    admin.dispose()

    good = _cli(["--source-url", ro_url, "--source-schema", "till", "check-source"])
    assert good["exit_code"] == 0 and "has every table and column" in good["output"]
    assert not good["tensorflow"]
    role = sa.engine.make_url(ro_url).username
    admin = sa.create_engine(shop_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'REVOKE SELECT ON till.stores FROM "{role}"')
    admin.dispose()
    denied = _cli(["--source-url", ro_url, "--source-schema", "till", "check-source"])
    assert denied["exit_code"] == 78 and "stores cannot be read: " in denied["output"]
    assert "permission denied" in denied["output"]

    opts = ["--db-url", f"sqlite:///{tmp_path / 'job.db'}", "--source-url", shop_url,
            "--source-schema", "bad"]
    assert _cli([opts[0], opts[1], "init-db"])["exit_code"] == 0
    for args in (["check-source"], ["--photo-root", str(tmp_path / "photos"), "--model",
                                    str(tiny_model_path), "--lock-dir", str(tmp_path / "l"),
                                    "nightly", "--date", DAY.isoformat()]):
        result = _cli([*opts, *args])
        assert result["exit_code"] == 78, result["output"]
        lines = result["output"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: source "), result["output"]
        for problem in ("missing table or view stores", "receipts lacks column(s) id_checked",
                        "checkout_photos.taken_at is timestamp with time zone, needs "
                        "timestamp without time zone"):
            assert problem in lines[0]
        assert not result["tensorflow"] and not result["traceback"]
    assert not (tmp_path / "marketing").exists()


def test_source_schema_needs_postgresql_and_a_plain_name(sqlite_url, tmp_path):
    fill_shop(sqlite_url, tmp_path / "photos", n_receipts=26)
    for schema, why in (("till", "needs PostgreSQL"), ("till; drop", "not a schema name")):
        result = CliRunner().invoke(cli, ["--db-url", sqlite_url, "--source-schema", schema,
                                          "check-source"])
        assert result.exit_code == 2 and why in result.output, result.output
    ok = CliRunner().invoke(cli, ["--db-url", sqlite_url, "check-source"])
    assert ok.exit_code == 0, ok.output


def test_unreachable_source_is_exit_69_without_its_password(tmp_path):
    url = "postgresql+psycopg://ro:s3cret-till-pw@127.0.0.1:1/pos"
    result = CliRunner().invoke(cli, ["--db-url", f"sqlite:///{tmp_path / 'job.db'}",
                                      "--source-url", url, "check-source"])
    assert result.exit_code == 69, result.output
    assert "source unavailable (postgresql+psycopg://ro:***@127.0.0.1:1/pos)" in result.output
    assert "s3cret-till-pw" not in result.output
