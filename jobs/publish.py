"""`ageseg publish`: load one day's marketing tables into the database, replacing that day."""

from __future__ import annotations

import datetime as dt

import click

from jobs.settings import Settings, pass_settings


@click.command("publish")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Day to publish (default: yesterday).")
@pass_settings
def command(settings: Settings, day: dt.datetime | None) -> None:
    """Copy a day's sales_by_age_group and recommendations into mkt_* database tables.

    The day's rows are replaced in one transaction, so publishing twice leaves one copy.
    Only marketing tables (aggregates, small cells suppressed) are published.

    \b
    Example: AGESEG_DB_URL=postgresql+psycopg://shop@db/shop ageseg publish --date 2026-11-28
    """
    from analytics.parquet import PartitionNotFound
    from analytics.publish import publish_day
    from jobs.errors import database_errors
    from jobs.runner import yesterday
    from sql.engine import DatabaseUrlError, make_engine, redact_url

    when = day.date() if day else yesterday()
    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    try:
        with database_errors(settings.db_url):
            counts = publish_day(engine, settings.output_root, when)
    except PartitionNotFound as exc:
        raise click.ClickException(f"{exc}; run `ageseg nightly --date {when}` first") from exc
    finally:
        engine.dispose()
    summary = ", ".join(f"{rows} rows in {table}" for table, rows in counts.items())
    click.echo(f"{when}: {summary} ({redact_url(settings.db_url)})")
