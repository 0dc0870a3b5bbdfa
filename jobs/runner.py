"""What `nightly` and `rescore` share: lock, load the model once, run days, report, exit codes."""

from __future__ import annotations

import datetime as dt
import logging
import sys
import uuid
from collections.abc import Sequence

import click

from jobs.lock import EXIT_LOCKED, AlreadyRunning, run_lock
from jobs.settings import Settings

log = logging.getLogger("ageseg")

EXIT_DB_UNAVAILABLE = 69  # EX_UNAVAILABLE
EXIT_CANT_WRITE = 73  # EX_CANTCREAT


class JobFailed(click.ClickException):
    """A run-time failure with its own exit code, printed as one line."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def parse_bins(spec: str):
    from analytics.age_groups import AgeBins, AgeBinsError

    try:
        return AgeBins.parse(spec)
    except AgeBinsError as exc:
        raise click.BadParameter(str(exc), param_hint="--age-bins") from exc


def run_days(settings: Settings, days: Sequence[dt.date], *, job: str, dry_run: bool) -> None:
    """Run each day independently; stop at the first failure with a one-line reason."""
    from analytics.parquet import OutputError
    from sql.engine import DatabaseUnavailable, DatabaseUrlError, make_engine, redact_url

    bins = parse_bins(settings.age_bins)  # bad bins fail before any work
    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    try:
        if dry_run:
            _dry_run(settings, engine, days)
            return
        with run_lock(settings.lock_dir):
            model, detector = _load_scoring(settings)
            for day in days:
                summary = _run_one(settings, engine, day, model, detector, bins, job)
                _print_summary(summary)
    except AlreadyRunning as exc:
        raise JobFailed(str(exc), EXIT_LOCKED) from exc
    except DatabaseUnavailable as exc:
        raise JobFailed(f"database unavailable ({redact_url(settings.db_url)}): {exc}",
                        EXIT_DB_UNAVAILABLE) from exc
    except OutputError as exc:
        raise JobFailed(str(exc), EXIT_CANT_WRITE) from exc
    finally:
        engine.dispose()


def _load_scoring(settings: Settings):
    from models.faces import MtcnnDetector, WholeImageDetector
    from models.persist import ModelFileError, ModelNotFound, load_model

    try:
        model = load_model(settings.model_path)
    except (ModelNotFound, ModelFileError) as exc:
        raise JobFailed(str(exc)) from exc
    if not (model.card.get("metrics") or {}).get("val_mae"):
        raise JobFailed(f"model {model.version} has no validation figures: refusing to "
                        "present an untrained model's output as ages")
    detector = WholeImageDetector() if settings.photos_are_faces else MtcnnDetector()
    log.info("model %s (validation MAE %s years)", model.version, model.card["metrics"]["val_mae"])
    return model, detector


def _run_one(settings, engine, day, model, detector, bins, job):
    from analytics.pipeline import NightlyConfig, run_nightly

    config = NightlyConfig(settings.photo_root, settings.output_root, settings.restricted_root,
                           bins, settings.min_cell, settings.batch_size)
    run_id = f"{day.isoformat()}-{uuid.uuid4().hex[:8]}"
    log.info("%s %s: run %s", job, day, run_id)
    if sys.stderr.isatty():
        from sql import queries

        total = len(queries.photos_for_day(engine, day))
        with click.progressbar(length=total, label=f"{day} photos", file=sys.stderr) as bar:
            return run_nightly(engine, day, model, detector, config, run_id=run_id, job=job,
                               on_batch=bar.update)
    return run_nightly(engine, day, model, detector, config, run_id=run_id, job=job)


def _print_summary(summary) -> None:
    c = summary.counts
    click.echo(
        f"{summary.day}: {c['photos']} photos, {c['scored']} aged, {c['no_face']} no face, "
        f"{c['quarantined']} quarantined; {c['receipts']} receipts, {c['cells']} cells "
        f"({c['suppressed_cells']} suppressed) in {summary.seconds:.1f}s"
    )
    for name, path in summary.outputs.items():
        click.echo(f"  {name}: {path}")
    for row in summary.quarantine.itertuples():
        click.echo(f"  quarantined photo {row.photo_id} {row.path!r}: {row.reason}", err=True)


def _dry_run(settings: Settings, engine, days) -> None:
    from models.persist import read_card
    from sql import queries
    from sql.engine import with_retries

    path = settings.model_path
    if path is None:
        from models.persist import DEFAULT_MODEL_PATH as path
    card = read_card(path)
    click.echo(f"model {card.get('version')} from {path}")
    for day in days:
        photos = with_retries(lambda d=day: queries.photos_for_day(engine, d))
        click.echo(f"{day}: would score {len(photos)} photos from {settings.photo_root}")


def yesterday() -> dt.date:
    return dt.date.today() - dt.timedelta(days=1)
