"""`ageseg report`: a Markdown report with charts over a range of days, for analysts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from jobs.settings import Settings, pass_settings


@click.command("report")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First day of the report.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last day of the report (inclusive).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/report"), show_default=True,
              help="Folder for report.md and its PNG charts.")
@pass_settings
def command(settings: Settings, start: dt.datetime, end: dt.datetime, out_dir: Path) -> None:
    """Age-group mix per store and day, top categories per age group, week-over-week change.

    Reads only the marketing tables under --output-root, so the report can go wherever
    those tables may go.

    \b
    Example: ageseg report --from 2026-11-01 --to 2026-11-28 --out var/report
    """
    from analytics.parquet import OutputError
    from analytics.report import NoDataError, write_report

    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    try:
        path = write_report(settings.output_root, start.date(), end.date(), out_dir)
    except (NoDataError, OutputError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report: {path}")
