"""`ageseg check-source`: does the till (source) database have what the job reads?"""

from __future__ import annotations

import click

from jobs.preflight import checked_source, source_engine
from jobs.settings import Settings, pass_settings


@click.command("check-source")
@pass_settings
def command(settings: Settings) -> None:
    """Check, in seconds and without loading the model, that the source has every table,
    column and type the job reads; list every problem in one message (exit 78).

    `nightly` and `rescore` run the same check before they start.

    \b
    Example: ageseg --source-url postgresql+psycopg://ro@till/pos --source-schema till check-source
    """
    from sql.engine import redact_url

    source = source_engine(settings)
    try:
        checked_source(settings, source)
    finally:
        source.dispose()
    click.echo(f"source {redact_url(settings.source)} has every table and column the job "
               "reads")
