"""Engines for SQLite and PostgreSQL, password-free URLs for messages, retries on disconnects.

A nightly job should survive a database that restarts for a minute, but must not hammer it or
retry mistakes that will never succeed; and no password may reach a log line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TypeVar
from urllib.parse import quote, urlencode

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

T = TypeVar("T")

PG_CONNECT_TIMEOUT_S = 10
SQLITE_BUSY_TIMEOUT_MS = 30_000

# user:password@ in URL-like text, and password=... in key/value connection strings.
_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*:)[^@\s]*(?=@)")
_KV_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)('[^']*'|\"[^\"]*\"|[^\s&;]+)", re.I)
# SQLite messages that no retry can fix, although sqlite3 reports them as OperationalError.
_SQLITE_PERMANENT = ("no such table", "no such column", "syntax error", "has no column")
# A schema name for --source-schema (unquoted: PostgreSQL folds it to lower case).
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# Connection failures that waiting cannot fix: report them at once.
_HOPELESS = ("authentication failed", "does not exist", "no password supplied")


class DatabaseUnavailable(Exception):
    """The database could not be reached (after retries); the message holds no password."""


class DatabaseUrlError(ValueError):
    """The database URL cannot be used (bad syntax, unknown dialect or driver)."""


def redact_url(url: str) -> str:
    """`url` with any password shown as ***, safe for logs, errors and run records."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy understands: mask what looks like a password
        return scrub_passwords(url)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    rendered = parsed.render_as_string(hide_password=True)
    return rendered.replace("password=%2A%2A%2A", "password=***")  # undo URL-quoting of ***


def scrub_passwords(text: str) -> str:
    """Mask passwords in free text (driver messages sometimes echo connection strings)."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _KV_PASSWORD.sub(r"\g<head>***", text)


def make_engine(url: str, *, read_only: bool = False,
                search_path: Sequence[str] = ()) -> sa.Engine:
    """An engine that checks pooled connections before use; SQLite gets WAL and foreign keys.

    WAL lets readers (reports) run while the nightly job writes; SQLite enforces foreign keys
    only when asked, per connection.

    `read_only` (the till source): the server itself refuses writes, so a bug cannot write
    either. PostgreSQL sessions start with `default_transaction_read_only=on` (set through
    the connection's `options`, which the ADBC bulk reader gets from the same URL); SQLite
    connections get `PRAGMA query_only`. `search_path` (PostgreSQL only) names the schemas
    where the source's tables or views are looked up, in order.
    """
    try:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if search_path and backend != "postgresql":
            raise DatabaseUrlError(f"a source schema needs PostgreSQL, not {backend} "
                                   f"({redact_url(url)})")
        if backend == "sqlite":
            engine = sa.create_engine(parsed, pool_pre_ping=True)
            event.listen(engine, "connect", _sqlite_on_connect_read_only if read_only
                         else _sqlite_on_connect)
            return engine
        connect_args = {}
        if backend == "postgresql":
            connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
            parsed = _with_session_options(parsed, read_only, search_path)
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DatabaseUrlError(f"cannot use database URL {redact_url(url)}: {exc}") from None


def parse_search_path(spec: str) -> tuple[str, ...]:
    """`till` or `till,public` as schema names; anything that is not a plain identifier is
    refused rather than quoted, since it ends up in a libpq `options` string."""
    names = tuple(part.strip() for part in spec.split(","))
    bad = [name for name in names if not _IDENTIFIER.fullmatch(name)]
    if bad or not names:
        raise DatabaseUrlError(f"not a schema name: {', '.join(map(repr, bad)) or repr(spec)} "
                               "(letters, digits, _ and $; several separated by commas)")
    return names


def _with_session_options(url: URL, read_only: bool, search_path: Sequence[str]) -> URL:
    """`url` with libpq `options` that make every session read-only and set its search_path.

    In the URL rather than in connect_args, so that the ADBC reader (sql/day_reads.py), which
    connects from the engine's URL, opens its sessions the same way."""
    settings = []
    if read_only:
        settings.append("-c default_transaction_read_only=on")
    if search_path:
        settings.append(f"-c search_path={','.join(search_path)}")
    if not settings:
        return url
    existing = url.query.get("options", "")
    if isinstance(existing, tuple):
        existing = " ".join(existing)
    return url.update_query_dict({"options": " ".join([existing, *settings]).strip()})


def libpq_uri(url: URL) -> str:
    """`url` as a libpq connection URI (password included: for a driver, never for a log).

    Query values are %-encoded: libpq reads `+` as a plus sign, not as a space, so
    SQLAlchemy's own rendering would break an `options` value such as `-c a=b`."""
    query = {key: " ".join(value) if isinstance(value, tuple) else value
             for key, value in url.query.items()}
    base = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    return base + (f"?{urlencode(query, quote_via=quote)}" if query else "")


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")  # a no-op answer for :memory: databases
    finally:
        cursor.close()


def _sqlite_on_connect_read_only(dbapi_connection, _record) -> None:
    """A reader's connection: no journal-mode change (that is a write), and query_only, so
    that any INSERT, UPDATE, DELETE or CREATE through it fails."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA query_only=ON")
    finally:
        cursor.close()


def is_transient(exc: BaseException) -> bool:
    """True for errors a later attempt may not meet: lost or refused connections, locks."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    message = str(exc.orig).lower()
    return not any(marker in message for marker in _SQLITE_PERMANENT)


def with_retries(fn: Callable[[], T], attempts: int = 4, base_delay: float = 0.5) -> T:
    """Call `fn()`; on a transient database error wait base_delay * 2**n and try again.

    `fn` must be safe to run twice: a read, or a write whose one transaction gives the same
    end state when repeated (an UPDATE to fixed values, a delete-then-insert). A connection
    lost during COMMIT leaves the outcome unknown, so a plain INSERT retried here may meet its
    own first attempt as a duplicate key.

    Other errors (constraint violations, bad SQL) propagate at once. After `attempts` failures,
    or at once when the server refuses us for good (bad password, no such database), raises
    DatabaseUnavailable with a one-line, password-free reason.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except sa.exc.DBAPIError as exc:
            if not is_transient(exc):
                raise
            reason = _one_line_reason(exc)
            if any(marker in reason.lower() for marker in _HOPELESS):
                raise DatabaseUnavailable(f"database unavailable: {reason}") from None
            if attempt == attempts:
                raise DatabaseUnavailable(
                    f"database unavailable after {attempts} attempts: {reason}"
                ) from None
            delay = base_delay * 2 ** (attempt - 1)
            log.warning("database error (attempt %d/%d), retrying in %.1fs: %s",
                        attempt, attempts, delay, reason)
            time.sleep(delay)
    raise AssertionError("unreachable")  # the loop always returns or raises


def ping(engine: sa.Engine) -> None:
    """Open a connection and run a trivial query.

    The nightly job calls this (through `with_retries`) before it spends minutes loading the
    model and scoring photos, so a database that is down fails the run in seconds.
    """
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")


def describe_error(exc: BaseException) -> str:
    """One password-free line for any database error: the driver's first message line.

    SQLAlchemy's own text appends the SQL and its bound parameters, which can run to
    thousands of characters and may hold data; an operator needs only the first line.
    """
    if isinstance(exc, sa.exc.DBAPIError):
        return _one_line_reason(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return scrub_passwords(f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": "))


def _one_line_reason(exc: sa.exc.DBAPIError) -> str:
    """The driver's first message line (no SQL, no parameters), passwords masked."""
    orig = exc.orig if exc.orig is not None else exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    text = lines[0] if lines else type(orig).__name__
    return scrub_passwords(f"{type(orig).__name__}: {text}")
