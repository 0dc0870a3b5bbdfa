"""The start-up checks of `nightly`, `rescore` and `check-source`: every one is cheap and
comes before TensorFlow and the model load, so an operator learns in seconds, not after an
hour of scoring, that the night cannot work. The runner calls them in order; each failure
has its own exit code (jobs/errors.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobs.errors import EXIT_CONFIG, EXIT_EMPTY_DAY, EXIT_USAGE, JobFailed, unavailable
from jobs.settings import DEFAULT_DB_URL, DEFAULT_PHOTO_ROOT, Settings

if TYPE_CHECKING:
    import datetime as dt

    import sqlalchemy as sa


def parse_bins(spec: str):
    """The --age-bins spec as AgeBins; a bad one is a usage error (exit 2)."""
    from analytics.age_groups import AgeBins, AgeBinsError

    try:
        return AgeBins.parse(spec)
    except AgeBinsError as exc:
        raise click.BadParameter(str(exc), param_hint="--age-bins") from exc


def check_model(settings: Settings) -> tuple[Path, dict]:
    """The model file and its card, read without TensorFlow: a wrong --model or an untrained
    model fails in well under a second, not after the 10-15 s of importing TensorFlow."""
    import zipfile

    from models.persist import (
        DEFAULT_MODEL_PATH,
        FORMAT,
        ModelFileError,
        ModelNotFound,
        read_card,
    )

    path = settings.model_path or DEFAULT_MODEL_PATH
    try:
        card = read_card(path)
    except (ModelNotFound, ModelFileError) as exc:
        raise JobFailed(str(exc)) from exc
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise JobFailed(f"{path} is not an ageseg model file (no readable card: {exc})") from exc
    if card.get("format") != FORMAT:
        raise JobFailed(f"{path}: unknown model format {card.get('format')!r}")
    if not (card.get("metrics") or {}).get("val_mae"):
        raise JobFailed(f"model {card.get('version', 'unversioned')} has no validation "
                        "figures: refusing to present an untrained model's output as ages")
    return Path(path), card


def check_sqlite_file(db_url: str) -> None:
    """A SQLite URL must name an existing file: SQLite would create an empty one and the run
    would then fail on a missing table (or the defaults, used outside the repository, would
    be reported as an outage)."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or database in ("", ":memory:")
            or database.startswith("file:") or url.query.get("uri")):
        return
    if Path(database).is_file():
        return
    where = _default_note(db_url == DEFAULT_DB_URL, "--db-url / AGESEG_DB_URL")
    raise JobFailed(f"database file {database} does not exist{where}; create the tables with "
                    "`ageseg init-db` (or build the demo with `make demo`)", EXIT_USAGE)


def check_photo_root(settings: Settings) -> None:
    """Refuse a photo root that is not a folder (an unmounted share)."""
    if not settings.photo_root.is_dir():
        # Every photo would be quarantined as missing and the day's tables replaced by ones
        # where every shopper's age is unknown: refuse instead.
        where = _default_note(settings.photo_root == DEFAULT_PHOTO_ROOT,
                              "--photo-root / AGESEG_PHOTO_ROOT")
        raise JobFailed(f"photo root {settings.photo_root} is not a folder{where} "
                        "(is the photo share mounted?)")


def _default_note(is_default: bool, option: str) -> str:
    """For a demo default used elsewhere: say it was the default and where it was looked for."""
    if not is_default:
        return ""
    return (f" (the demo default, relative to the current folder {Path.cwd()}; "
            f"run from the repository or set {option})")


def source_engine(settings: Settings) -> sa.Engine:
    """The till data's engine, read-only whatever its URL; a usage error (exit 2) for a bad
    --source-url or --source-schema, or for a SQLite source file that does not exist."""
    from sql.engine import DatabaseUrlError, make_engine, parse_search_path

    option = "--source-url" if settings.separate_source else "--db-url"
    try:
        schemas = parse_search_path(settings.source_schema) if settings.source_schema else ()
    except DatabaseUrlError as exc:
        raise click.BadParameter(str(exc), param_hint="--source-schema") from exc
    try:
        engine = make_engine(settings.source, read_only=True, search_path=schemas)
    except DatabaseUrlError as exc:
        hint = "--source-schema" if schemas and "schema" in str(exc) else option
        raise click.BadParameter(str(exc), param_hint=hint) from exc
    missing = _missing_sqlite_file(engine)
    if missing:
        engine.dispose()
        raise click.BadParameter(f"source database file {missing} does not exist",
                                 param_hint=option)
    return engine


@contextmanager
def source_errors(settings: Settings) -> Iterator[None]:
    """The source stayed down through the retries: "source unavailable (...)", exit 69.
    The one place that says so, for `check-source` and the runs' start-up checks alike."""
    from sql.engine import DatabaseUnavailable

    try:
        yield
    except DatabaseUnavailable as exc:
        raise unavailable("source", settings.source, exc) from exc


def checked_source(settings: Settings, source: sa.Engine) -> None:
    """Reach the source (with retries: exit 69 if it stays down), then refuse one that
    lacks what the job reads with exit 78, naming every problem."""
    from sql.engine import ping, redact_url, with_retries
    from sql.source import source_problems

    with source_errors(settings):
        with_retries(lambda: ping(source))
        schemas = _schemas(settings)
        problems = with_retries(lambda: source_problems(source, schemas))
    if problems:
        raise JobFailed(f"source {redact_url(settings.source)} does not have what the job "
                        f"reads: {'; '.join(problems)} (see README, \"Running on a chain's "
                        "till database\")", EXIT_CONFIG)


def _schemas(settings: Settings) -> tuple[str, ...]:
    from sql.engine import parse_search_path

    return parse_search_path(settings.source_schema) if settings.source_schema else ()


def _missing_sqlite_file(engine: sa.Engine) -> str | None:
    """A read-only reader must not create an empty SQLite file where the till should be."""
    url = engine.url
    database = url.database or ""
    if (url.get_backend_name() != "sqlite" or database in ("", ":memory:")
            or database.startswith("file:") or url.query.get("uri")):
        return None
    return None if Path(database).is_file() else database


def check_ready(settings: Settings, engine: sa.Engine, days: Sequence[dt.date], *,
                allow_empty: bool, writing: bool = True,
                source: sa.Engine | None = None) -> None:
    """Fail fast on what would otherwise fail after the model load and all the scoring: the
    job's database and tables, the source, the output roots, each day's rows and photos."""
    from analytics.parquet import check_writable
    from analytics.pipeline import check_photo_files
    from sql import queries
    from sql.engine import ping, redact_url, with_retries

    source = source or engine
    with_retries(lambda: ping(engine))
    missing = with_retries(lambda: queries.missing_tables(
        engine, shop=not settings.job_tables_only))
    if missing:
        raise JobFailed(f"database {redact_url(settings.db_url)} lacks the tables "
                        f"{', '.join(missing)}: create them with `ageseg init-db`")
    checked_source(settings, source)
    if writing:  # creates the output folders (empty) if need be
        for root in (settings.output_root, settings.restricted_root):
            check_writable(root)
    for day in days:
        counts = with_retries(lambda d=day: queries.day_counts(source, d))
        if not counts["receipts"] and not counts["photos"] and not allow_empty:
            raise JobFailed(f"{day} has no receipts and no photos in "
                            f"{redact_url(settings.source)}: were its sales loaded? Nothing "
                            "was written; pass --allow-empty to write empty tables for it",
                            EXIT_EMPTY_DAY)
        if counts["photos"]:
            photos = with_retries(lambda d=day: queries.photos_for_day(source, d))
            check_photo_files(photos, day, settings.photo_root)
