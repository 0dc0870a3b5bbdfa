"""`ageseg init-db`: create the schema (safe to run again)."""

from __future__ import annotations

import click

from jobs.cli import pass_settings
from jobs.settings import Settings


@click.command("init-db")
@pass_settings
def command(settings: Settings) -> None:
    """Create the shop tables, run log and quarantine table if they are missing.

    With --source-url naming another database (the till, read-only) or --source-schema,
    only the job's own tables (runs, quarantine, mkt_*) are created in --db-url, and nothing
    in the source.

    \b
    Example: AGESEG_DB_URL=postgresql+psycopg://shop@db/shop ageseg init-db
    """
    from sql.engine import (
        DatabaseUnavailable,
        DatabaseUrlError,
        make_engine,
        redact_url,
        with_retries,
    )
    from sql.queries import create_schema

    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    try:
        with_retries(lambda: create_schema(engine, shop=not settings.job_tables_only))
    except DatabaseUnavailable as exc:
        raise click.ClickException(
            f"database unavailable ({redact_url(settings.db_url)}): {exc}") from exc
    finally:
        engine.dispose()
    which = "the job's tables" if settings.job_tables_only else "schema"
    click.echo(f"{which} ready in {redact_url(settings.db_url)}")
