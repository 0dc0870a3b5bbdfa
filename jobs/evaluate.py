"""`ageseg evaluate`: how good is a model on labelled faces, where it matters for a shop."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from jobs.settings import Settings, pass_settings

# `under18_flagged_at_25` held the 13-17 rate at whatever --threshold was given: the JSON now
# says so in its name, and keeps the old key as an alias until the next release.
TEEN_KEY, OLD_TEEN_KEY = "age_13_17_flagged", "under18_flagged_at_25"


def _no_own_model(ctx: click.Context, _param: click.Parameter, value: object) -> None:
    """`evaluate --model X` used to pick its own model while the group's --model (and
    AGESEG_MODEL) were ignored; one way now: the group's option."""
    if value is not None:
        raise click.UsageError(
            f"--model belongs before the command, as for every command: "
            f"ageseg --model {value} evaluate ... (or set AGESEG_MODEL)", ctx)


@click.command("evaluate")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="CSV with file_name,real_age (gender,race,source optional).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Folder holding the labelled face images.")
@click.option("--model", "own_model", hidden=True, expose_value=False, callback=_no_own_model,
              help="Moved: give the group's --model before the command.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all",
              show_default=True, help="Evaluate one part of the training split (same seed "
              "and fractions as the model's recipe), e.g. `test` for held-out faces.")
@click.option("--threshold", type=float, default=25.0, show_default=True,
              help="The 'looks under N' age of the compliance check.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a predicted-vs-real scatter and residual plot (PNG) here.")
@click.option("--calibration-plot", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the reliability diagram of P(age < threshold) and "
              "the flag-rate trade-off with the operating point marked (PNG) here.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--predictions", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one row per face here (CSV: file_name, real_age, pred_age, error "
              "and the label columns).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Faces per model call.")
@pass_settings
def command(settings: Settings, labels: Path, images: Path, split: str, threshold: float,
            plot: Path | None, calibration_plot: Path | None, as_json: bool,
            predictions: Path | None, batch_size: int) -> None:
    """MAE overall, per age band, gender and race, and the Challenge 25 flag rates.

    The model is the group's --model (AGESEG_MODEL; default: the shipped model), as for
    every command.

    \b
    Example: ageseg --model models/new.ageseg evaluate --labels faces/labels.csv \\
             --images faces/final_files --split test --predictions var/test_faces.csv
    """
    model_path = settings.model_path
    from models.calibrate import (
        format_probability_report,
        plot_calibration,
        probability_metrics,
    )
    from models.evaluate import evaluate_ages, format_report, plot_evaluation
    from models.labels import LabelsError, load_labels, split_labels
    from models.persist import ModelFileError, ModelNotFound, load_model, read_card
    from models.predict import predict_files_all

    try:
        read_card(model_path) if model_path else None  # a wrong --model fails before TF
        loaded = load_labels(labels, images, check_images=True)
        click.echo(f"{len(loaded.frame)} labelled faces; loading TensorFlow and the model "
                   "...", err=True)
        model = load_model(model_path, precision=settings.precision)
    except (LabelsError, ModelNotFound, ModelFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    if loaded.problems:
        click.echo(f"left out {len(loaded.problems)} bad label row(s):", err=True)
        click.echo(loaded.describe_problems(), err=True)
    frame = loaded.frame
    if split != "all":
        recipe = model.card.get("recipe", {})
        frame = split_labels(frame, recipe.get("seed", 1337), recipe.get("val_frac", 0.1),
                             recipe.get("test_frac", 0.15))[split]
    if frame.empty:
        raise click.ClickException("no usable labelled faces to evaluate")
    paths = frame["path"].tolist()
    if sys.stderr.isatty():
        with click.progressbar(length=len(paths), label=f"{len(paths)} faces",
                               file=sys.stderr) as bar:
            ages, probs, head = predict_files_all(model, paths, batch_size,
                                                  on_batch=bar.update)
    else:
        click.echo(f"scoring {len(paths)} faces ...", err=True)
        ages, probs, head = predict_files_all(model, paths, batch_size)
    frame = frame.assign(pred_age=ages)
    if predictions:
        _write_predictions(frame, predictions)
    try:
        metrics = evaluate_ages(frame, threshold=threshold)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    metrics = {TEEN_KEY: metrics[OLD_TEEN_KEY], **metrics}
    metrics["model_version"] = model.version
    metrics["split"] = split
    # The Challenge 25 operating point: --flag-probability (the group's), else the card's.
    point = settings.flag_probability or (model.card.get("calibration") or {}).get(
        "flag_probability")
    under = model.p_under(probs, head, threshold) if point is not None else None
    if under is not None:
        metrics.update(probability_metrics(under, frame["real_age"].to_numpy(float),
                                           threshold, point))
        metrics["p_under_source"] = "under_head" if model.reads_head(threshold) \
            else "distribution"
    if plot:
        plot_evaluation(frame, plot)
    if calibration_plot:
        if under is None:
            raise click.ClickException("this model has no calibrated age distribution "
                                       "(no operating point on its card) to plot")
        plot_calibration(under, frame["real_age"].to_numpy(float), threshold, point,
                         calibration_plot)
    if as_json:
        click.echo(json.dumps(metrics, allow_nan=False))
    else:
        click.echo(f"model {model.version}, {split} faces")
        click.echo(format_report(metrics))
        if under is not None:
            click.echo("")
            click.echo(format_probability_report(metrics, threshold))
        for path in (plot, calibration_plot):
            if path:
                click.echo(f"plot: {path}")
        if predictions:
            click.echo(f"predictions: {predictions}")


def _write_predictions(frame, path: Path) -> None:
    """One row per face, for looking at the worst errors or comparing two models."""
    out = frame.drop(columns=["path"], errors="ignore").assign(
        pred_age=frame["pred_age"].round(2),
        error=(frame["pred_age"] - frame["real_age"]).round(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False)
