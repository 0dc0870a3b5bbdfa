"""`ageseg demo`: build a sample day and run the nightly job on it, end to end."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shlex
import sys
import time
from pathlib import Path

import click

from jobs.runner import run_days
from jobs.settings import Settings, pass_settings

DEMO_DAY = dt.date(2026, 11, 28)


@click.command("demo")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("var/demo"), show_default=True,
              help="Folder for the demo database, photos and tables.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=str(DEMO_DAY),
              show_default=True, help="Day to generate and score.")
@click.option("--faces", "faces_dir", type=click.Path(exists=True, file_okay=False,
              path_type=Path), default=None,
              help="Labelled faces (labels.csv + final_files/) to use as shoppers; the demo "
              "then also reports the scored ages' error against the true ones.")
@click.option("--stores", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Stores in the generated day.")
@click.option("--receipts-per-store", type=click.IntRange(10, 5000), default=100,
              show_default=True, help="Receipts (and checkout photos) per store.")
@pass_settings
def command(settings: Settings, workdir: Path, day: dt.datetime, faces_dir: Path | None,
            stores: int, receipts_per_store: int) -> None:
    """Generate a day of purchases and checkout photos, score it, show sales by age group.

    \b
    Example: ageseg demo --workdir var/demo --faces ../shared/faces
    """
    from demo.generate import build_demo

    click.echo(f"building the demo day {day.date()} in {workdir} ...", err=True)
    started = time.monotonic()
    demo = build_demo(workdir, day.date(), faces_dir=faces_dir, stores=stores,
                      receipts_per_store=receipts_per_store,
                      on_progress=lambda message: click.echo(message, err=True))
    click.echo(f"built {len(demo.shoppers)} receipts and their checkout photos in "
               f"{time.monotonic() - started:.0f}s; scoring them: TensorFlow and the age "
               "model load first (10-30 s), then every photo goes through face detection "
               "and the model ...", err=True)
    settings = dataclasses.replace(
        settings, db_url=demo.db_url, photo_root=demo.photo_root,
        output_root=workdir / "out" / "marketing",
        restricted_root=workdir / "out" / "restricted", lock_dir=workdir / "locks",
    )
    run_days(settings, [demo.day], job="nightly", dry_run=False)
    _show(settings, demo)


def read_card_of(settings: Settings) -> dict:
    """The card of the model the demo scored with."""
    from models.persist import DEFAULT_MODEL_PATH, read_card

    return read_card(settings.model_path or DEFAULT_MODEL_PATH)


def _show(settings: Settings, demo) -> None:
    import pandas as pd

    from analytics.parquet import read_partition
    from analytics.summaries import category_share_table

    sales = read_partition(settings.output_root, "sales_by_age_group", demo.day)
    click.echo("\nShare of each age group's spend by category, all stores (%):")
    with pd.option_context("display.width", 140, "display.max_columns", 20):
        click.echo(category_share_table(sales).to_string())
    hidden = int(sales["suppressed"].sum())
    if hidden:
        # A row such as "25-34 fresh produce 100.0" is then only the few cells left over.
        click.echo(f"(from the cells that could be shown: {hidden} of {len(sales)} store x age "
                   f"group x category cells ({hidden / len(sales):.0%}) had fewer than "
                   f"{settings.min_cell} receipts and are suppressed; a bigger day, e.g. "
                   "--receipts-per-store 1000, shows more)")
    estimates = read_partition(settings.restricted_root, "age_estimates", demo.day)
    scored = estimates.merge(demo.shoppers, on="receipt_id").dropna(subset=["age"])
    if len(scored):
        mae = (scored["age"] - scored["true_age"]).abs().mean()
        faces = demo.shoppers["face"].nunique()
        test_mae = (read_card_of(settings).get("metrics") or {}).get("test_mae")
        click.echo(f"\nages written for the demo's checkout photos (detect, crop, estimate) vs "
                   f"the shoppers' true ages: MAE {mae:.1f} years over {len(scored)} receipts "
                   f"of {faces} different face(s)")
        if test_mae is not None:
            click.echo(f"  (the model's own MAE on held-out face crops: {test_mae:.2f} years; "
                       + ("with so few faces the line above is those people's error, not the "
                          "model's)" if faces < 20 else "bench/scene_quality.py measures both "
                          "side by side)"))
    click.echo("\nquery the tables, e.g. (DuckDB is installed as a Python package):")
    click.echo(f"  {query_hint(settings.output_root)}")


def query_hint(output_root: Path) -> str:
    """A shell command that runs as printed: there is no `duckdb` command, but this Python
    has the duckdb package."""
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    sql = (f"select * from read_parquet('{output_root}/sales_by_age_group/*/*.parquet', "
           "hive_partitioning=true) limit 10")
    code = f'import duckdb; duckdb.sql("{sql}").show()'
    if not set('"$`\\!') & set(sql):  # readable double quotes when nothing in them expands
        return f'{shlex.quote(python)} -c "{code.replace(chr(34), chr(92) + chr(34))}"'
    return f"{shlex.quote(python)} -c {shlex.quote(code)}"
