"""`ageseg confusion MODEL --faces DIR`: put the model's confusion over ages on its card.

The corrected marketing estimates (analytics/estimates.py) need to know how the model errs:
for each true age, which ages it estimates. This measures that on the validation faces the
model's recipe held out, each pasted into a checkout scene and aged through the job's own
path (decode, detect, crop, model; models/confusion.py), twice clean and twice as a worse
camera would take it, and writes the counts onto the
model's card. Nothing is retrained: the weights are copied as they are. `ageseg train`
does the same for every new model.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from jobs.settings import Settings, pass_settings


@click.command("confusion")
@click.argument("model_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--faces", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Labelled faces: labels.csv and final_files/ (the set the "
              "model was trained from; its validation split is used).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the model with the new card here (default: replace MODEL_FILE).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the checkout scenes the faces are pasted into.")
@pass_settings
def command(settings: Settings, model_file: Path, faces: Path, out: Path | None,
            seed: int) -> None:
    """Measure MODEL_FILE's confusion on its validation faces and write it on its card.

    Example: ageseg confusion models/default.ageseg --faces ../shared/faces
    """
    from analytics.age_groups import AgeBins
    from jobs.scoring_setup import make_detector
    from models.confusion import measure_confusion, validation_faces, with_confusion, write_card
    from models.persist import load_model, read_card

    card = read_card(model_file)
    val = validation_faces(card, faces)
    if val.empty:
        raise click.ClickException(f"no validation faces under {faces}")
    model = load_model(model_file, precision=settings.precision)
    model.warm_up(32)
    detector = make_detector(settings.detector, settings.min_face_size,
                             settings.face_confidence)
    detector.warm_up()
    started = time.monotonic()
    with click.progressbar(length=4 * len(val), label="validation scenes") as bar:
        confusion = measure_confusion(val, model, detector, seed=seed, on_batch=bar.update)
    target = write_card(model_file, with_confusion(card, confusion), out)
    bins = AgeBins.parse(settings.age_bins)
    seconds = time.monotonic() - started
    click.echo(f"confusion of model {card.get('version')}: {confusion.faces} validation "
               f"scenes (each face twice clean, twice camera-degraded) in {seconds:.0f} s, "
               f"{int(confusion.unaged.sum())} without a face; shoppers 14+ in their true "
               f"group {confusion.group_accuracy(bins.lowers, 14):.0%} of the time; "
               f"written to {target}")
