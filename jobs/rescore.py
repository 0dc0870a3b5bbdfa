"""`ageseg rescore`: run the nightly job over a range of past days, e.g. with a new model."""

from __future__ import annotations

import datetime as dt
import os

import click

from jobs.runner import day_options, run_days
from jobs.settings import Settings, pass_settings


@click.command("rescore")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First day to re-score.")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="Last day to re-score (inclusive).")
@day_options
@click.option("--force", is_flag=True,
              help="Re-score days this model already scored with these settings too.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="local: this process; ray: Ray Data (extra `ray`).")
@click.option("--ray-address", default=None,
              help="Join this Ray cluster (auto, ray://head:10001); default: a local Ray.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray model actors (one model each); default: one per GPU (per "
              "--gpus-per-worker share), or 40 % of the CPUs on a cluster without GPUs. "
              "Photo preparation gets the other CPUs (--prep-workers caps it).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="GPUs each Ray model actor takes (default: 1 on a cluster with GPUs, "
              "0 without).")
@click.option("--chunk-photos", type=click.IntRange(min=1), default=100_000,
              show_default=True, help="Photos (whole days) handed to Ray at a time; bounds "
              "the driver's memory. Workers reload the model for each chunk.")
@pass_settings
def command(settings: Settings, start: dt.datetime, end: dt.datetime, dry_run: bool,
            allow_empty: bool, force: bool, engine: str, ray_address: str | None,
            workers: int | None, gpus_per_worker: float | None, chunk_photos: int) -> None:
    """Re-score every day from --from to --to (inclusive), one day at a time.

    Each day is replaced on its own, so an interrupted rescore leaves finished days done
    and the rest as they were; run it again to finish: days this model version already
    wrote with the same settings are skipped (--force re-scores them). Exit codes as for
    `nightly`.

    With --engine ray the photos are scored on Ray Data (a local Ray, or the cluster at
    --ray-address) and the days written here, in order, exactly as without it.

    \b
    Example: ageseg --model models/new.ageseg rescore --from 2026-10-01 --to 2026-10-31
    Example: ageseg rescore --from 2026-01-01 --to 2026-06-30 --engine ray --ray-address auto
    """
    if end < start:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    ray = None
    if engine == "ray":
        ray = _ray_options(ray_address, workers, gpus_per_worker, chunk_photos,
                           settings.prep_workers)
    elif ray_address or workers or gpus_per_worker is not None:
        raise click.BadParameter("--ray-address, --workers and --gpus-per-worker need "
                                 "--engine ray", param_hint="--engine")
    days = [start.date() + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    run_days(settings, days, job="rescore", dry_run=dry_run, allow_empty=allow_empty,
             force=force, ray=ray)


# Set before Ray is imported: a local Ray (no --ray-address) then binds its services to
# loopback (127.0.0.1) instead of this machine's network address, as a single-machine run
# should; a cluster's nodes must stay reachable, so only without an address.
LOCAL_RAY_ON_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _ray_options(address, workers, gpus_per_worker, chunk_photos, prep_workers):
    if address is None:
        for name, value in LOCAL_RAY_ON_LOOPBACK.items():
            os.environ.setdefault(name, value)
    try:
        from jobs.ray_plan import RayOptions
    except ImportError as exc:  # the `ray` extra is not installed
        raise click.UsageError(f"--engine ray needs Ray: pip install -e '.[ray]' ({exc})") \
            from exc
    return RayOptions(address, workers, gpus_per_worker, chunk_photos, prep_workers)
