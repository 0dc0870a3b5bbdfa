"""What `nightly` and `rescore` share: lock, load the model once, run days, report.

Only the orchestration: the start-up checks are in jobs/preflight.py, the exit codes and
the database-error rule in jobs/errors.py."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobs.errors import (
    EXIT_CANT_WRITE,
    EXIT_LOCKED,
    EXIT_NO_PHOTOS,
    EXIT_TERMINATED,
    JobFailed,
    database_errors,
)
from jobs.lock import AlreadyRunning, LockError, lock_holder, run_lock
from jobs.preflight import (
    check_model,
    check_photo_root,
    check_ready,
    check_sqlite_file,
    parse_bins,
    source_engine,
)
from jobs.scoring_setup import load_scoring, new_run_id, resolved
from jobs.settings import Settings

if TYPE_CHECKING:
    from jobs.ray_plan import RayOptions

log = logging.getLogger("ageseg")


def day_options(command):
    """--dry-run and --allow-empty, shared by `nightly` and `rescore`."""
    command = click.option(
        "--allow-empty", is_flag=True,
        help="Write empty tables for a day with no receipts and no photos (default: refuse "
        "with exit 65, as the day's sales were most likely never loaded).")(command)
    return click.option(
        "--dry-run", is_flag=True,
        help="Run the start-up checks and say what would be scored; write nothing.")(command)


def run_days(settings: Settings, days: Sequence[dt.date], *, job: str, dry_run: bool,
             allow_empty: bool = False, force: bool = True,
             ray: RayOptions | None = None) -> None:
    """Run each day independently; stop at the first failure with a one-line reason.

    Without `force`, a day whose outputs this model version already wrote with these
    settings is skipped (a rerun of a rescore finishes what is left). With `ray`, the days'
    photos are scored on Ray (jobs/ray_engine.py) and written here, day by day, the same way.

    Cheap checks come before expensive work, each with its own exit code, in this order:
    age bins and the database URLs (2), the model file and card (1), a SQLite file that does
    not exist (2), the photo root (1), the lock (75), the database and its tables (69, 1),
    the source and every table, column and type the job reads from it (69, 78; the same
    check as `ageseg check-source`), the output roots (73), a day with no receipts and no
    photos (65), a day whose photos are not under the photo root (66).
    All of them come before TensorFlow and the model load, and --dry-run runs them too:
    an operator learns in seconds, not after an hour of scoring, that the night cannot work.
    """
    from analytics.parquet import OutputError, PartitionUnreadable
    from analytics.pipeline import PhotosUnavailable
    from sql.engine import DatabaseUrlError, make_engine

    parse_bins(settings.age_bins)  # bad bins fail before any work
    try:
        engine = make_engine(settings.db_url)
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--db-url") from exc
    # Nothing below creates a file until these pass (not the lock, not an empty SQLite file).
    model_path, card = check_model(settings)
    check_sqlite_file(settings.db_url)
    source = source_engine(settings)  # read-only: nothing is ever written through it
    check_photo_root(settings)
    what = f"{job} {days[0]}" + (f"..{days[-1]}" if len(days) > 1 else "")
    try:
        with database_errors(settings.db_url):
            if dry_run:
                check_ready(settings, engine, days, allow_empty=allow_empty, writing=False,
                            source=source)
                _dry_run(settings, source, days, model_path, card)
                return
            with _sigterm_as_exception(), run_lock(settings.lock_dir, what=what):
                check_ready(settings, engine, days, allow_empty=allow_empty, source=source)
                _mark_interrupted(settings, engine)
                if ray is not None:
                    from jobs.ray_engine import rescore_on_ray

                    for summary in rescore_on_ray(settings, engine, days,
                                                  night_config(settings), ray, job=job,
                                                  force=force, on_skip=_print_skip,
                                                  source=source):
                        print_summary(summary)
                    return
                model, detector = load_scoring(settings)
                settings = resolved(settings, model)  # batch size and prep workers for it
                for day in days:
                    if not force and _is_current(settings, day, model.version):
                        _print_skip(day, model.version)
                        continue
                    summary = _run_one(settings, engine, day, model, detector, job,
                                       source=source)
                    print_summary(summary, verbose=settings.verbose > 0)
    except AlreadyRunning as exc:
        raise JobFailed(str(exc), EXIT_LOCKED) from exc
    except LockError as exc:
        raise JobFailed(str(exc.strerror or exc), EXIT_CANT_WRITE) from exc
    except OutputError as exc:
        raise JobFailed(str(exc), EXIT_CANT_WRITE) from exc
    except PartitionUnreadable as exc:
        raise JobFailed(str(exc)) from exc
    except PhotosUnavailable as exc:
        raise JobFailed(str(exc), EXIT_NO_PHOTOS) from exc
    except Terminated as exc:
        raise JobFailed(str(exc), EXIT_TERMINATED) from exc
    finally:
        engine.dispose()
        source.dispose()


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no `except
    Exception` on the way swallows it; the pipeline records the run as failed on its way up."""


@contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """Turn SIGTERM (systemd stop, cron timeout, `kill`) into an exception.

    By default SIGTERM ends Python without unwinding, leaving the run's row "running" for
    ever; raised as an exception it unwinds like Ctrl-C: temp files are removed and the run
    is recorded as failed. Only the main thread may install handlers (tests may call us
    from elsewhere): there the default stays.
    """

    def handler(signum: int, _frame: object) -> None:
        raise Terminated(f"terminated by {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _mark_interrupted(settings: Settings, engine) -> None:
    """Runs left 'running' under this lock were killed (we hold it now): say so in `runs`."""
    from sql import queries
    from sql.engine import with_retries

    holder = lock_holder(settings.lock_dir)
    dead = with_retries(lambda: queries.mark_interrupted(engine, holder))
    if dead:
        click.echo(f"marked {len(dead)} earlier run(s) of this lock interrupted (killed "
                   f"before they finished): {', '.join(dead)}", err=True)


def night_config(settings: Settings):
    """The night's options for these settings, run under this lock, retention from today."""
    return settings.night(holder=lock_holder(settings.lock_dir), today=dt.date.today())


def _is_current(settings: Settings, day: dt.date, model_version: str) -> bool:
    from analytics.pipeline import day_is_current

    return day_is_current(night_config(settings), day, model_version)


def _print_skip(day: dt.date, model_version: str) -> None:
    click.echo(f"{day}: skipped, already scored by model {model_version} with these settings "
               "(--force re-scores it)")


def _run_one(settings, engine, day, model, detector, job, source=None):
    from analytics.pipeline import run_nightly

    config = night_config(settings)
    run_id = new_run_id(day)
    log.info("%s %s: run %s", job, day, run_id)
    if sys.stderr.isatty():
        from sql import queries
        from sql.engine import with_retries

        total = len(with_retries(lambda: queries.photos_for_day(source or engine, day)))
        with click.progressbar(length=total, label=f"{day} photos", file=sys.stderr) as bar:
            return run_nightly(engine, day, model, detector, config, run_id=run_id, job=job,
                               on_batch=bar.update, source=source)
    return run_nightly(engine, day, model, detector, config, run_id=run_id, job=job,
                       on_batch=_progress_log(), source=source)


def _progress_log() -> Callable[[int], None]:
    """Log each scored batch (with -v): cron logs then show how far a killed run got."""
    done = 0

    def on_batch(n: int) -> None:
        nonlocal done
        done += n
        log.info("scored %d photos", done)

    return on_batch


def print_summary(summary, verbose: bool = False) -> None:
    """The day's lines of the night's summary, as an operator reads them in the cron mail."""
    c = summary.counts
    click.echo(
        f"{summary.day}: {c['photos']} photos, {c['scored']} aged, {c['no_face']} no face, "
        f"{c['quarantined']} quarantined; {c['receipts']} receipts, {c['cells']} cells "
        f"({c['suppressed_cells']} suppressed) in {summary.seconds:.1f}s"
    )
    if c["photos"]:
        shares = ", ".join(f"{name.replace('_', ' ')} {100 * c.get(name, 0) / c['photos']:.1f} %"
                           for name in ("ok", "several_faces", "low_confidence",
                                        "low_quality", "no_face", "quarantined"))
        click.echo(f"  photos: {shares}")
    low_quality = c.get("flagged_low_quality", 0)
    click.echo(
        f"  {c.get('recommendations', 0)} recommendations; compliance: {c.get('flagged', 0)} "
        f"flagged of {c.get('alcohol_sales', 0)} age-restricted sales"
        f"{f' ({low_quality} on low-quality photos)' if low_quality else ''}; retention deleted "
        f"{c.get('compliance_partitions_deleted', 0)} compliance partition(s) "
        f"({c.get('compliance_rows_deleted', 0)} flagged rows)"
    )
    for note in getattr(summary, "notes", []):  # how the corrected estimates were made
        click.echo(f"  {note}")
    for line in summary.camera_alerts:
        click.echo(f"  {line}")
    if summary.scoring is not None:
        click.echo(f"  {summary.scoring.line(verbose)}")
    for name, path in summary.outputs.items():
        click.echo(f"  {name}: {path}")
    for row in summary.quarantine.itertuples():
        click.echo(f"  quarantined photo {row.photo_id} {row.path!r}: {row.reason}", err=True)


def _dry_run(settings: Settings, engine, days, model_path: Path, card: dict) -> None:
    from sql import queries
    from sql.engine import with_retries

    click.echo(f"model {card.get('version')} from {model_path}")
    for day in days:
        photos = with_retries(lambda d=day: queries.photos_for_day(engine, d))
        click.echo(f"{day}: would score {len(photos)} photos from {settings.photo_root}")


def yesterday() -> dt.date:
    return dt.date.today() - dt.timedelta(days=1)
