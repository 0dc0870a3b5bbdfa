"""`ageseg check-source`: does the till (source) database have what the job reads?"""

from __future__ import annotations

from pathlib import Path

import click
import sqlalchemy as sa

from jobs.cli import pass_settings
from jobs.settings import Settings


@click.command("check-source")
@pass_settings
def command(settings: Settings) -> None:
    """Check, in seconds and without loading the model, that the source has every table,
    column and type the job reads; list every problem in one message (exit 78).

    `nightly` and `rescore` run the same check before they start.

    \b
    Example: ageseg --source-url postgresql+psycopg://ro@till/pos --source-schema till check-source
    """
    from jobs.runner import EXIT_DB_UNAVAILABLE, JobFailed
    from sql.engine import DatabaseUnavailable, redact_url

    source = source_engine(settings)
    try:
        checked_source(settings, source)
    except DatabaseUnavailable as exc:
        raise JobFailed(f"source unavailable ({redact_url(settings.source)}): {exc}",
                        EXIT_DB_UNAVAILABLE) from exc
    finally:
        source.dispose()
    click.echo(f"source {redact_url(settings.source)} has every table and column the job "
               "reads")


def source_engine(settings: Settings) -> sa.Engine:
    """The till data's engine, read-only whatever its URL; a usage error (exit 2) for a bad
    --source-url or --source-schema, or for a SQLite source file that does not exist."""
    from sql.engine import DatabaseUrlError, make_engine, parse_search_path

    option = "--source-url" if settings.separate_source else "--db-url"
    try:
        schemas = parse_search_path(settings.source_schema) if settings.source_schema else ()
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--source-schema") from exc
    try:
        engine = make_engine(settings.source, read_only=True, search_path=schemas)
    except DatabaseUrlError as exc:
        hint = "--source-schema" if schemas and "schema" in str(exc) else option
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    missing = _missing_sqlite_file(engine)
    if missing:
        engine.dispose()
        raise click.BadParameter(f"source database file {missing} does not exist",
                                 param_hint=option)
    return engine


def checked_source(settings: Settings, source: sa.Engine) -> None:
    """Reach the source (with retries: exit 69 if it stays down), then refuse one that
    lacks what the job reads with exit 78, naming every problem."""
    from jobs.runner import EXIT_CONFIG, JobFailed
    from sql.engine import ping, redact_url, with_retries
    from sql.source import source_problems

    with_retries(lambda: ping(source))
    schemas = _schemas(settings)
    problems = with_retries(lambda: source_problems(source, schemas))
    if problems:
        raise JobFailed(f"source {redact_url(settings.source)} does not have what the job "
                        f"reads: {'; '.join(problems)} (see README, \"Running on a chain's "
                        "till database\")", EXIT_CONFIG)


def _schemas(settings: Settings) -> tuple[str, ...]:
    from sql.engine import parse_search_path

    return parse_search_path(settings.source_schema) if settings.source_schema else ()


def _missing_sqlite_file(engine: sa.Engine) -> str | None:
    """A read-only reader must not create an empty SQLite file where the till should be."""
    url = engine.url
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or database in ("", ":memory:")
            or database.startswith("file:") or url.query.get("uri")):
        return None
    return None if Path(database).is_file() else database
