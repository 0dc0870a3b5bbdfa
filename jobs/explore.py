"""`ageseg explore`: look at a labelled face set before training on it."""

from __future__ import annotations

from pathlib import Path

import click

from models.explore import ExploreError, explore, summary_lines
from models.labels import LabelsError


@click.command("explore")
@click.option("--labels", "labels_csv", required=True,
              type=click.Path(path_type=Path, dir_okay=False),
              help="Labels CSV: file_name,real_age[,gender,race,source].")
@click.option("--images", "images_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Folder holding the image files named in the CSV.")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, dir_okay=True,
              file_okay=False),
              help="Folder for report.md and its charts (keep it out of the repository: "
                   "it holds sample faces).")
def command(labels_csv: Path, images_dir: Path, out_dir: Path) -> None:
    """Write a data report: problem rows, age histogram and heaping, age bands,
    sample faces per band, image sizes and modes, unreadable files, group breakdowns.

    \b
    Example: ageseg explore --labels faces/labels.csv --images faces/final_files --out var/explore
    """
    try:
        report = explore(labels_csv, images_dir, out_dir)
    except (LabelsError, ExploreError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report: {report}")
    for line in summary_lines(report):
        click.echo(f"  {line}")
