"""`ageseg nightly`: score one day (yesterday by default). Meant for cron."""

from __future__ import annotations

import datetime as dt

import click

from jobs.runner import day_options, run_days, yesterday
from jobs.settings import Settings, pass_settings


@click.command("nightly")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Day to score (default: yesterday).")
@day_options
@pass_settings
def command(settings: Settings, day: dt.datetime | None, dry_run: bool,
            allow_empty: bool) -> None:
    """Score one day's checkout photos and replace that day's tables.

    \b
    Exit codes: 0 done, 1 failed, 2 bad usage or settings (nothing done),
    65 the day has no receipts and no photos (see --allow-empty),
    66 none of the day's photo files exists under --photo-root,
    69 database unavailable, 73 output not writable, 75 another run holds the lock,
    78 the source lacks tables, columns or types the job reads (see check-source),
    143 stopped by SIGTERM.

    \b
    Example: ageseg nightly --date 2026-11-28
    """
    run_days(settings, [day.date() if day else yesterday()], job="nightly", dry_run=dry_run,
             allow_empty=allow_empty)
