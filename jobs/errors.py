"""The jobs' exit codes, their run-time failure and the one database-error rule.

Below every command module (it imports only Click, and sql.engine inside the context
manager), so that any of them (the runner, the start-up checks, the Ray engine, `publish`,
`runs`, `init-db`) can raise or map errors without importing another command.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import click

log = logging.getLogger("ageseg")

# The README's exit-code table; 0 and 1 are Click's own (done, failed).
EXIT_USAGE = 2  # as Click's own usage errors: nothing was done
EXIT_EMPTY_DAY = 65  # EX_DATAERR: no receipts and no photos; the day was never loaded?
EXIT_NO_PHOTOS = 66  # EX_NOINPUT
EXIT_DB_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_CANT_WRITE = 73  # EX_CANTCREAT
EXIT_LOCKED = 75  # EX_TEMPFAIL: cron may simply try again later
EXIT_CONFIG = 78  # EX_CONFIG: the source lacks tables, columns or types the job reads
EXIT_TERMINATED = 128 + signal.SIGTERM  # what a shell reports for a process killed by SIGTERM


class JobFailed(click.ClickException):
    """A run-time failure with its own exit code, printed as one line."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def unavailable(what: str, url: str, exc: Exception) -> JobFailed:
    """`<what> unavailable (<url without password>) ...`, exit 69: the one wording for a
    database (or source) that stayed down through the retries."""
    from sql.engine import redact_url

    reason = str(exc).removeprefix("database unavailable").lstrip(": ")
    return JobFailed(f"{what} unavailable ({redact_url(url)})"
                     f"{' ' if reason.startswith('after') else ': '}{reason}",
                     EXIT_DB_UNAVAILABLE)


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Map the job database's failures to one line each: unreachable after the retries
    (exit 69), or any other SQLAlchemy error, not transient (missing table, no permission,
    ...: exit 1). Every command that touches --db-url runs its work inside this."""
    import sqlalchemy as sa

    from sql.engine import DatabaseUnavailable, describe_error, redact_url

    try:
        yield
    except DatabaseUnavailable as exc:
        raise unavailable("database", url, exc) from exc
    except sa.exc.SQLAlchemyError as exc:
        log.debug("database error", exc_info=True)
        raise JobFailed(f"database error ({redact_url(url)}): {describe_error(exc)}") from exc
