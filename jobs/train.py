"""`ageseg train`: fit the ResNet50 age model on labelled faces."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

DEFAULT_CHECKPOINTS = Path.home() / ".cache" / "ageseg" / "checkpoints"


@click.command("train")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="CSV with file_name,real_age (gender,race,source optional).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Folder holding the labelled face images.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the trained model (.ageseg).")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Checkpoints, history and curves (default: "
              "~/.cache/ageseg/checkpoints/<out name>).")
@click.option("--resume", is_flag=True, help="Continue the run saved in --checkpoint-dir.")
@click.option("--backbone-weights", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Local ImageNet ResNet50 weights (no top) to start from.")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from this .ageseg model's weights (e.g. the shipped "
              "one) with a fresh schedule: continue training where checkpoints are gone.")
@click.option("--head", type=click.Choice(["dex", "regression"]), default="dex",
              show_default=True, help="dex: expected age over a softmax; regression: the "
              "study's Dense(1) with MSE.")
@click.option("--image-size", type=click.IntRange(min=32), default=64, show_default=True,
              help="Side of the square face crop the model takes, in pixels.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Faces per training step.")
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True,
              help="Epochs of the whole schedule (early stopping may end sooner).")
@click.option("--steps-per-epoch", type=click.IntRange(min=1), default=None,
              help="Batches per epoch (default: one pass over the training split).")
@click.option("--patience", type=click.IntRange(min=1), default=8, show_default=True,
              help="Stop after this many epochs without a better validation MAE.")
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True,
              help="Peak learning rate, reached after the warm-up epoch.")
@click.option("--seed", type=int, default=1337, show_default=True,
              help="Fixes the train/validation/test split and the shuffling.")
@click.option("--max-minutes", type=float, default=None,
              help="Stop cleanly at an epoch boundary before this many minutes; --resume "
              "continues later.")
@click.option("--on-bad-rows", type=click.Choice(["skip", "stop"]), default="skip",
              show_default=True, help="Bad label rows: leave them out (listed) or stop.")
@click.option("--sample-weights", type=click.Choice(["none", "lds", "under25"]),
              default="none", show_default=True, help="Weight the age loss per face: lds, "
              "rare ages up by label-distribution smoothing; under25, the under-25s twice "
              "(models/imbalance.py), so the model pulls the young less to the middle.")
@click.option("--under-head", "under_age", type=click.FloatRange(min=1, max=99), default=None,
              help="Add a second output P(age < AGE) trained with binary cross-entropy "
              "toward 13-30; compliance reads it where it beats the age distribution.")
@click.option("--export/--no-export", default=True, show_default=True,
              help="Add the LiteRT graph to the trained model file (as `ageseg export`, "
              "checked on --images), so CPU nodes score it without TensorFlow.")
@click.option("--ema", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0,
              show_default=True, help="Ship the moving average of the weights with this "
              "momentum (e.g. 0.99) instead of the best epoch; early stopping is then off.")
@click.option("--camera-aug", "camera_prob", type=click.FloatRange(min=0, max=1),
              default=0.0, show_default=True, help="Share of training faces degraded as a "
              "cheap checkout camera degrades them (dim or bright light, blur, noise, JPEG, "
              "small faces, tilted heads; models/camera.py), e.g. 0.5 when fine-tuning.")
def command(labels: Path, images: Path, out: Path, checkpoint_dir: Path | None, resume: bool,
            backbone_weights: Path | None, init_from: Path | None, head: str, image_size: int,
            batch_size: int, epochs: int, steps_per_epoch: int | None, patience: int,
            learning_rate: float, seed: int, max_minutes: float | None, on_bad_rows: str,
            sample_weights: str, under_age: float | None, export: bool, ema: float,
            camera_prob: float) -> None:
    """Train the age model; an interrupted run continues with --resume.

    Example: ageseg train --labels faces/labels.csv --images faces/final_files --out model.ageseg
    """
    from jobs.extras import require_train_extra

    require_train_extra("ageseg train")
    from models.labels import LabelsError, load_labels
    from models.recipe import TrainConfig, TrainingError
    from models.train import train

    try:
        loaded = load_labels(labels, images, strict=on_bad_rows == "stop", check_images=True)
    except LabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    if loaded.problems:
        click.echo(f"left out {len(loaded.problems)} bad label row(s):", err=True)
        click.echo(loaded.describe_problems(), err=True)
    config = TrainConfig(image_size=image_size, head=head, batch_size=batch_size, epochs=epochs,
                         steps_per_epoch=steps_per_epoch, learning_rate=learning_rate, seed=seed,
                         patience=patience, sample_weights=sample_weights,
                         under_age=under_age, ema=ema, camera_prob=camera_prob)
    checkpoint_dir = checkpoint_dir or DEFAULT_CHECKPOINTS / out.stem
    card_extra = {
        "data": {"labels": str(labels), "images": str(images), "rows": len(loaded.frame),
                 "left_out_rows": len(loaded.problems)},
        "command": "ageseg " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "ageseg train",
    }
    if "utkface" in " ".join(map(str, loaded.frame.get("source", [])[:50])).lower():
        card_extra["data"]["licence"] = (
            "UTKFace: non-commercial research use only; the model inherits this restriction"
        )
    try:
        result = train(loaded.frame, out, checkpoint_dir, config,
                       backbone_weights=backbone_weights, init_from=init_from, resume=resume,
                       max_minutes=max_minutes, card_extra=card_extra,
                       log=lambda m: click.echo(m, err=True))
    except (TrainingError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if export:
        from models.litert import export_model_file

        click.echo("adding the LiteRT graph to the model file ...", err=True)
        try:
            export_model_file(result.model_path, faces=images,
                              echo=lambda m: click.echo(m, err=True))
        except ValueError as exc:  # the model is saved; CPU nodes then score it on Keras
            click.echo(f"warning: {exc}; the model file has no LiteRT graph (scored on "
                       f"Keras) until `ageseg export {result.model_path}` succeeds", err=True)
    click.echo(f"model: {result.model_path}")
    click.echo(f"validation MAE: {result.metrics['val_mae']} years; "
               f"test MAE: {result.metrics['test_mae']} years")
    click.echo(f"history and curves: {checkpoint_dir}")
