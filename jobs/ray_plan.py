"""How `rescore --engine ray` sizes its two stages: pure arithmetic over the cluster's
resources, importable and testable without Ray (jobs/ray_engine.py runs the plan)."""

from __future__ import annotations

from dataclasses import dataclass

from jobs.scoring_setup import batch_size_for
from jobs.settings import Settings

# On a CPU-only cluster the model stage gets this share of the CPUs and preparation the
# rest: a scene costs ~13 ms to prepare and ~8 ms in the model on one core.
MODEL_CPU_SHARE = 0.4


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run (the CLI's --ray-address, --workers, --gpus-per-worker)."""

    address: str | None = None  # None: start a local Ray on this machine
    workers: int | None = None  # model actors; None: one per GPU, or MODEL_CPU_SHARE of CPUs
    gpus_per_worker: float | None = None  # None: 1 on a cluster with GPUs, else 0
    chunk_photos: int = 100_000  # photos handed to Ray at a time (whole days)
    prep_workers: int | None = None  # preparation actors; None: the CPUs the model leaves


@dataclass(frozen=True)
class Plan:
    """How many actors each stage gets and what each asks of the cluster."""

    prep_actors: int
    model_actors: int
    gpus_per_model: float
    cpus_per_model: float
    batch_size: int


def plan_stages(resources: dict, options: RayOptions, settings: Settings) -> Plan:
    """Actors per stage for a cluster's `resources` (ray.cluster_resources()).

    With GPUs: a model actor per GPU (or per --gpus-per-worker share) and preparation on
    every CPU but one per model actor (which drives its GPU). Without: the model gets
    MODEL_CPU_SHARE of the CPUs, preparation the rest; each actor takes one CPU, so both
    pools always fit (at least one actor each; on a one-CPU cluster they share it).
    """
    cpus = max(1, int(resources.get("CPU", 1)))
    gpus = float(resources.get("GPU", 0))
    per_model = options.gpus_per_worker if options.gpus_per_worker is not None else (
        1.0 if gpus >= 1 else 0.0)
    if per_model:
        models = options.workers or max(1, int(gpus // per_model))
    else:
        models = min(options.workers or max(1, round(cpus * MODEL_CPU_SHARE)),
                     max(1, cpus - 1))  # leave preparation a CPU
    prep = min(options.prep_workers or cpus, max(1, cpus - models))
    model_cpus = 1.0 if prep + models <= cpus else 0.0  # one CPU: the stages share it
    return Plan(prep, models, per_model, model_cpus, batch_size_for(settings, per_model > 0))
