"""The `ageseg` command group: options and AGESEG_* variables become one Settings object."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click

# TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature hints, a warning MTCNN
# triggers on photos without a face) would bury the job's own lines in cron logs. Errors
# still show; set TF_CPP_MIN_LOG_LEVEL=0 to see everything.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from jobs import quiet_tf
from jobs.settings import (
    DEFAULT_AGE_BINS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHALLENGE_AGE,
    DEFAULT_COMPLIANCE_RETENTION_DAYS,
    DEFAULT_DB_URL,
    DEFAULT_GPU_BATCH_SIZE,
    DEFAULT_MIN_CELL,
    DEFAULT_MIN_FACE_SIZE,
    DEFAULT_PHOTO_ROOT,
    DEFAULT_WINDOW_DAYS,
    DETECTORS,
    PRECISIONS,
    Settings,
)

quiet_tf.install()  # the two start-up lines that TF_CPP_MIN_LOG_LEVEL cannot silence


@click.group(context_settings={"auto_envvar_prefix": "AGESEG",
                                "help_option_names": ["-h", "--help"]})
@click.option("--db-url", default=DEFAULT_DB_URL, show_default=True,
              help="SQLAlchemy URL of the job's own database: runs, quarantine and the "
              "published mkt_* tables are written here; the till data is read from here too "
              "unless --source-url names another (env AGESEG_DB_URL).")
@click.option("--source-url", default=None,
              help="SQLAlchemy URL of the till data (stores, products, receipts, "
              "receipt_lines, checkout_photos), opened read-only; nothing is written there "
              "(env AGESEG_SOURCE_URL; default: --db-url).")
@click.option("--source-schema", default=None,
              help="PostgreSQL schema(s) of the till tables or views, as search_path: "
              "'till' or 'till,public' (env AGESEG_SOURCE_SCHEMA; default: the server's).")
@click.option("--photo-root", type=click.Path(path_type=Path), default=DEFAULT_PHOTO_ROOT,
              show_default=True, help="Folder that checkout photo paths are relative to.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              envvar=["AGESEG_MODEL", "AGESEG_MODEL_PATH"],
              help="Age model file (.ageseg) for every command that uses one (env "
              "AGESEG_MODEL). Default: the model shipped with the package.")
@click.option("--output-root", type=click.Path(path_type=Path),
              default=Path("var/demo/out/marketing"), show_default=True,
              help="Marketing Parquet tables (aggregates only).")
@click.option("--restricted-root", type=click.Path(path_type=Path),
              default=Path("var/demo/out/restricted"), show_default=True,
              help="Restricted Parquet tables (per-receipt estimates, compliance).")
@click.option("--lock-dir", type=click.Path(path_type=Path), default=Path("var/demo/locks"),
              show_default=True, help="Where run locks live.")
@click.option("--age-bins", default=DEFAULT_AGE_BINS, show_default=True,
              help="Age groups as lower-upper ranges, the last open-ended.")
@click.option("--min-cell", type=click.IntRange(min=1), default=DEFAULT_MIN_CELL,
              show_default=True, help="Suppress marketing cells with fewer receipts than this.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help=f"Photos per model call: larger uses more memory, is faster on a GPU "
              f"(default: {DEFAULT_BATCH_SIZE} with the model on a CPU, "
              f"{DEFAULT_GPU_BATCH_SIZE} on a GPU).")
@click.option("--prep-workers", type=click.IntRange(min=1), default=None,
              help="Threads that read, decode and find faces in photos while the model "
              "scores, each with its own detector (env AGESEG_PREP_WORKERS; default: the "
              "cores this process may use). The output does not depend on it.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="What the model's backbone computes in. auto: mixed float16 on a GPU; "
              "bf16 on a CPU with AMX or AVX512-BF16 (measured by bench/precision.py to "
              "leave the ages and flags as they are, see README), float32 on other CPUs.")
@click.option("--challenge-age", type=click.FloatRange(min=0, min_open=True),
              default=DEFAULT_CHALLENGE_AGE, show_default=True,
              help="Compliance flags sales of age-restricted goods to shoppers estimated "
              "under this age.")
@click.option("--flag-probability", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Flag an age-restricted sale when the model's P(shopper under "
              "--challenge-age) is at least this (default: the operating point on the model's "
              "card, chosen on validation faces; see `ageseg evaluate`).")
@click.option("--window-days", type=click.IntRange(min=1), default=DEFAULT_WINDOW_DAYS,
              show_default=True,
              help="Trailing days behind recommendations and compliance summaries.")
@click.option("--compliance-retention-days", type=click.IntRange(min=1),
              default=DEFAULT_COMPLIANCE_RETENTION_DAYS, show_default=True,
              help="The nightly run deletes compliance partitions older than this.")
@click.option("--photos-are-faces", is_flag=True,
              help="Photos are already face crops: skip face detection.")
@click.option("--detector", type=click.Choice(DETECTORS), default="blazeface",
              show_default=True, help="Face detector. blazeface: MediaPipe's one-pass "
              "network, 2-3x faster than mtcnn and finds as many shoppers; mtcnn: the "
              "previous default. Each has its own calibrated crop (the model card's 'crop').")
@click.option("--face-confidence", type=click.FloatRange(0, 1), default=None,
              help="Drop detections under this confidence (default: blazeface 0.5, "
              "mtcnn 0.8). Lower finds more children and turned faces, and more false faces.")
@click.option("--min-face-size", type=click.IntRange(min=12), default=DEFAULT_MIN_FACE_SIZE,
              show_default=True, help="Smallest face (pixels, in the photo) to look for; "
              "raise it when the shopper's face is always large: detection gets faster.")
@click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
@click.version_option(package_name="ageseg", prog_name="ageseg")
@click.pass_context
def cli(ctx: click.Context, verbose: int, **options: object) -> None:
    """Estimate shoppers' ages from checkout photos and write age-group sales tables."""
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    ctx.obj = Settings(**options, verbose=verbose)  # type: ignore[arg-type]


# One module per command keeps this file a table of contents. Imported here, after
# quiet_tf.install(), and never the other way round: a command takes `pass_settings` from
# jobs/settings.py, so no command module imports this one.
from jobs import (  # noqa: E402
    check_source,
    demo,
    evaluate,
    explore,
    init_db,
    nightly,
    publish,
    report,
    rescore,
    runs,
    train,
)

for _module in (init_db, check_source, nightly, rescore, demo, explore, train, evaluate,
                report, publish, runs):
    cli.add_command(_module.command)
