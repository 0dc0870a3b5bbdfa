"""`ageseg export`: put a LiteRT graph (dynamic-range int8 weights) into a model file, so
CPU nodes score it without TensorFlow (models/litert.py, issue 32)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--faces", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="A folder of face images (e.g. ../shared/faces/final_files) "
              "to check the graph against Keras on (default: generated crops).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the model here instead of replacing MODEL.")
def command(model: Path, faces: Path | None, out: Path | None) -> None:
    """Convert MODEL's network to LiteRT and store it inside the file, beside the Keras
    weights (stored int8 per channel); the card records how and how close to Keras.

    \b
    Example: ageseg export models/default.ageseg --faces ../shared/faces/final_files
    """
    from jobs.extras import require_train_extra

    require_train_extra("ageseg export")
    from models.litert import export_model_file
    from models.persist import ModelFileError, ModelNotFound

    click.echo("loading TensorFlow and the model, converting (about a minute) ...", err=True)
    try:
        entry = export_model_file(model, faces=faces, out=out,
                                  echo=lambda m: click.echo(m, err=True))
    except (ModelNotFound, ModelFileError, ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"model with its LiteRT graph ({entry['bytes'] / 1e6:.1f} MB): {out or model}")
