"""`ageseg init-db`: create the schema (safe to run again)."""

from __future__ import annotations

import click

from jobs.settings import Settings, pass_settings


@click.command("init-db")
@pass_settings
def command(settings: Settings) -> None:
    """Create the shop tables, run log and quarantine table if they are missing.

    With --source-url naming another database (the till, read-only) or --source-schema,
    only the job's own tables (runs, quarantine, mkt_*) are created in --db-url, and nothing
    in the source.

    Like every command, exits 69 when the database stays unreachable through the retries,
    and 1 on any other database error (no permission, ...).

    \b
    Example: AGESEG_DB_URL=postgresql+psycopg://shop@db/shop ageseg init-db
    """
    from jobs.errors import database_errors
    from sql.engine import DatabaseUrlError, make_engine, redact_url, with_retries
    from sql.queries import create_schema

    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    try:
        with database_errors(settings.db_url):
            with_retries(lambda: create_schema(engine, shop=not settings.job_tables_only))
    finally:
        engine.dispose()
    which = "the job's tables" if settings.job_tables_only else "schema"
    click.echo(f"{which} ready in {redact_url(settings.db_url)}")
