"""`ageseg evaluate`: how good is a model on labelled faces, where it matters for a shop."""

from __future__ import annotations

import json
from pathlib import Path

import click

from jobs.settings import Settings


@click.command("evaluate")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="CSV with file_name,real_age (gender,race,source optional).")
@click.option("--images", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Folder holding the labelled face images.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Model file (default: the shipped model).")
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
@click.option("--flag-probability", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Operating point to report (default: the one on the model's card).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
def command(labels: Path, images: Path, model_path: Path | None, split: str, threshold: float,
            plot: Path | None, calibration_plot: Path | None, flag_probability: float | None,
            as_json: bool, batch_size: int) -> None:
    settings = click.get_current_context().find_object(Settings)
    model_path = model_path or (settings.model_path if settings else None)
    """MAE overall, per age band, gender and race, and the Challenge 25 flag rates.

    \b
    Example: ageseg evaluate --labels faces/labels.csv --images faces/final_files --split test
    """
    from models.calibrate import (
        format_probability_report,
        p_under,
        plot_calibration,
        probability_metrics,
    )
    from models.evaluate import evaluate_ages, format_report, plot_evaluation
    from models.labels import LabelsError, load_labels, split_labels
    from models.persist import ModelFileError, ModelNotFound, load_model
    from models.predict import predict_files_distribution

    try:
        loaded = load_labels(labels, images, check_images=True)
        model = load_model(model_path)
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
    ages, probs = predict_files_distribution(model, frame["path"].tolist(), batch_size)
    frame = frame.assign(pred_age=ages)
    try:
        metrics = evaluate_ages(frame, threshold=threshold)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    metrics["model_version"] = model.version
    metrics["split"] = split
    point = flag_probability or (model.card.get("calibration") or {}).get("flag_probability")
    under = None
    if probs is not None and point is not None:
        under = p_under(probs, threshold)
        metrics.update(probability_metrics(under, frame["real_age"].to_numpy(float),
                                           threshold, point))
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
