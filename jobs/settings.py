"""One frozen settings object, built once by the CLI group from options and AGESEG_* variables.

Library code (models, sql, analytics) never reads the environment: it receives plain
arguments taken from this object.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import click

from analytics.config import (
    DEFAULT_AGE_BINS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHALLENGE_AGE,
    DEFAULT_COMPLIANCE_RETENTION_DAYS,
    DEFAULT_MIN_CELL,
    DEFAULT_WINDOW_DAYS,
    NightConfig,
)

DEFAULT_DB_URL = "sqlite:///var/demo/shop.db"
DEFAULT_PHOTO_ROOT = Path("var/demo/photos")
DEFAULT_MIN_FACE_SIZE = 40  # pixels; smaller faces are far-away people, not the shopper
DETECTORS = ("blazeface", "mtcnn")
PRECISIONS = ("auto", "float32", "bf16")
RUNTIMES = ("auto", "keras", "litert")  # jobs/runtime.py
DEFAULT_GPU_BATCH_SIZE = 256  # model on a GPU: large enough to keep it busy

__all__ = ["DEFAULT_AGE_BINS", "DEFAULT_BATCH_SIZE", "DEFAULT_CHALLENGE_AGE",
           "DEFAULT_COMPLIANCE_RETENTION_DAYS", "DEFAULT_DB_URL", "DEFAULT_GPU_BATCH_SIZE",
           "DEFAULT_MIN_CELL", "DEFAULT_MIN_FACE_SIZE", "DEFAULT_PHOTO_ROOT",
           "DEFAULT_WINDOW_DAYS", "DETECTORS", "PRECISIONS", "RUNTIMES", "Settings",
           "pass_settings"]


@dataclass(frozen=True)
class Settings:
    """Where the job reads and writes, and the knobs operators may turn."""

    db_url: str = DEFAULT_DB_URL  # the job's own database: runs, quarantine, mkt_* tables
    source_url: str | None = None  # the till data, read only; None: the same as db_url
    source_schema: str | None = None  # PostgreSQL search_path of the source, e.g. "till"
    photo_root: Path = DEFAULT_PHOTO_ROOT
    model_path: Path | None = None  # None: the model shipped in models/
    output_root: Path = Path("var/demo/out/marketing")
    restricted_root: Path = Path("var/demo/out/restricted")
    lock_dir: Path = Path("var/demo/locks")
    age_bins: str = DEFAULT_AGE_BINS
    min_cell: int = DEFAULT_MIN_CELL
    batch_size: int | None = None  # None: DEFAULT_BATCH_SIZE, or DEFAULT_GPU_BATCH_SIZE on a GPU
    prep_workers: int | None = None  # None: the cores this process may use
    precision: str = "auto"  # one of PRECISIONS (models/persist.py)
    runtime: str = "auto"  # one of RUNTIMES: what runs the age model (jobs/runtime.py)
    verbose: int = 0  # -v count: 1 adds where scoring's time went to its summary line
    photos_are_faces: bool = False
    detector: str = "blazeface"
    face_confidence: float | None = None  # None: the detector's own default
    min_face_size: int = DEFAULT_MIN_FACE_SIZE
    challenge_age: float = DEFAULT_CHALLENGE_AGE
    flag_probability: float | None = None  # None: the operating point on the model's card
    window_days: int = DEFAULT_WINDOW_DAYS
    compliance_retention_days: int = DEFAULT_COMPLIANCE_RETENTION_DAYS

    @property
    def source(self) -> str:
        """The URL the till data is read from (read-only)."""
        return self.source_url or self.db_url

    @property
    def separate_source(self) -> bool:
        """True when the till data lives in another database than the job's own tables."""
        return self.source != self.db_url

    @property
    def job_tables_only(self) -> bool:
        """True when --db-url holds only the job's own tables (runs, quarantine, mkt_*): the
        till data is in another database, or in a schema of its own (views, say)."""
        return self.separate_source or bool(self.source_schema)

    def night(self, *, holder: str = "", today: dt.date | None = None) -> NightConfig:
        """The options one night runs with (analytics/config.py), from these settings.
        Batch size and prep workers as resolved for the model (jobs/scoring_setup.resolved);
        unresolved, the CPU defaults."""
        return NightConfig(
            output_root=self.output_root, restricted_root=self.restricted_root,
            photo_root=self.photo_root, age_bins=self.age_bins, min_cell=self.min_cell,
            challenge_age=self.challenge_age, window_days=self.window_days,
            compliance_retention_days=self.compliance_retention_days,
            flag_probability=self.flag_probability,
            batch_size=self.batch_size or DEFAULT_BATCH_SIZE,
            prep_workers=self.prep_workers or 1, today=today, holder=holder)


# Each command module takes the group's Settings with this, from here and not from cli.py:
# cli.py imports every command, so a command importing cli.py would be an import cycle.
pass_settings = click.make_pass_decorator(Settings)
