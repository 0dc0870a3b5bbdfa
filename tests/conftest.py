"""Shared fixtures: real SQLite files, a real PostgreSQL database, generated images."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The Ray tests' local Ray (and the rescore subprocesses they start) listen on loopback only,
# not on this machine's network address (jobs/rescore.py sets the same for a local Ray).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

PG_ADMIN_URL = os.environ.get(
    "AGESEG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> str:
    """Admin URL of the local PostgreSQL; in CI (AGESEG_REQUIRE_PG=1) its absence fails."""
    if not _pg_available():
        if os.environ.get("AGESEG_REQUIRE_PG") == "1" or os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL not reachable (set AGESEG_TEST_PG_URL)")
    return PG_ADMIN_URL


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"ageseg_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.engine.make_url(pg_server).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A real SQLite file under the test's temporary folder."""
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request) -> str:
    """Run a test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on a fresh database (both backends) with the schema created."""
    from sql.engine import make_engine
    from sql.queries import create_schema

    eng = make_engine(db_url)
    create_schema(eng)
    yield eng
    eng.dispose()


SIZE = 32


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A small untrained ResNet50 with a test card: fast, and the job accepts it because the
    card carries validation figures (the job refuses models without them)."""
    from models.build import build_model
    from models.persist import save_model

    _, age_model = build_model(SIZE)
    path = tmp_path_factory.mktemp("model") / "tiny.ageseg"
    return save_model(age_model, path, {"version": "test-tiny", "metrics": {"val_mae": 99.0}})


@pytest.fixture(scope="session")
def month(tmp_path_factory):
    """A generated month on SQLite with planted estimates and every day's tables written
    (see tests/month.py); built once, shared by the marketing and compliance tests."""
    from tests.month import build_month

    root = tmp_path_factory.mktemp("month")
    return build_month(f"sqlite:///{root / 'shop.db'}", root)


@pytest.fixture(scope="session")
def litert_model_path(tmp_path_factory) -> Path:
    """A small untrained model as `ageseg export` leaves it: int8 Keras weights and a LiteRT
    graph, the card asking for the mirror average, calibrated distribution and P(under 25)
    head (every step of models/prediction.py). Exported once per session (~30 s)."""
    from models.build import build_model
    from models.litert import export_model_file
    from models.persist import save_model

    _, age_model = build_model(SIZE, under_age=25.0)
    folder = tmp_path_factory.mktemp("litert")
    card = {"version": "test-litert", "metrics": {"val_mae": 99.0},
            "prediction": {"mirror_average": True},
            "calibration": {"temperature": 0.9, "source": "under_head", "challenge_age": 25.0,
                            "flag_probability": 0.5,
                            "under_head": {"age": 25.0, "temperature": 0.8}}}
    source = save_model(age_model, folder / "float16.ageseg", card, weights="float16")
    out = folder / "litert.ageseg"
    export_model_file(source, out=out, echo=lambda _: None)
    return out


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the PostgreSQL server, so `-m "not postgres"` means it."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params.values() if callspec else ()
        on_pg = any(isinstance(value, str) and value == "postgresql" for value in params)
        if on_pg or {"pg_server", "pg_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)
