"""`ageseg runs`: the latest runs from the job's database, newest first."""

from __future__ import annotations

import click

from jobs.settings import Settings, pass_settings


@click.command("runs")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many runs to list.")
@pass_settings
def command(settings: Settings, limit: int) -> None:
    """List the latest runs with their status: ok, failed, running, abandoned, or
    interrupted (its driver was killed; the next run under the same lock marks it so).

    \b
    Example: ageseg runs --limit 5
    """
    from jobs.errors import database_errors
    from jobs.preflight import check_sqlite_file
    from sql.engine import DatabaseUrlError, make_engine, redact_url, with_retries
    from sql.queries import latest_runs

    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    check_sqlite_file(settings.db_url)
    try:
        with database_errors(settings.db_url):
            runs = with_retries(lambda: latest_runs(engine, limit))
    finally:
        engine.dispose()
    if runs.empty:
        click.echo(f"no runs in {redact_url(settings.db_url)}")
        return
    click.echo("started (UTC)        status       job       day         model  run")
    for run in runs.itertuples():
        click.echo(f"{run.started_at:%Y-%m-%d %H:%M:%S}  {run.status:<11}  {run.job:<8}  "
                   f"{run.day}  {run.model_version}  {run.run_id}")
