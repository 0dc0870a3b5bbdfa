"""`ageseg rescore`: run the nightly job over a range of past days, e.g. with a new model."""

from __future__ import annotations

import datetime as dt

import click

from jobs.cli import pass_settings
from jobs.runner import run_days
from jobs.settings import Settings


@click.command("rescore")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First day to re-score.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last day to re-score (inclusive).")
@click.option("--dry-run", is_flag=True,
              help="Run the start-up checks and say what would be scored; write nothing.")
@click.option("--allow-empty", is_flag=True,
              help="Write empty tables for days with no receipts and no photos (default: "
              "refuse with exit 65).")
@pass_settings
def command(settings: Settings, start: dt.datetime, end: dt.datetime, dry_run: bool,
            allow_empty: bool) -> None:
    """Re-score every day from --from to --to (inclusive), one day at a time.

    Each day is replaced on its own, so an interrupted rescore leaves finished days done
    and the rest as they were; run it again to finish. Exit codes as for `nightly`.

    \b
    Example: ageseg --model models/new.ageseg rescore --from 2026-10-01 --to 2026-10-31
    """
    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    days = [start.date() + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    run_days(settings, days, job="rescore", dry_run=dry_run, allow_empty=allow_empty)
