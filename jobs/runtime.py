"""Which runtime scores the photos: Keras (TensorFlow or JAX) or LiteRT, and with how many
threads. Decided without importing TensorFlow where it can be: on a CPU node TensorFlow's
import is most of a night's start-up, and the core install has none (issue 32).

`auto`: Keras on a GPU (where TensorFlow is installed and sees one); LiteRT on a CPU when
the model file carries a LiteRT graph (`ageseg export`); Keras otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

from jobs.errors import JobFailed
from jobs.extras import missing_train_extra

RUNTIMES = ("auto", "keras", "litert")


class RuntimeUnavailable(JobFailed):
    """The runtime asked for cannot run here; the one-line message says what to do."""


def gpu_device_present() -> bool:
    """Whether this machine shows an NVIDIA GPU to this process, read from the driver's
    files instead of TensorFlow (which takes seconds to import just to say no)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def choose_runtime(requested: str, model_has_graph: bool, keras_available: bool,
                   gpu: bool) -> str:
    """"keras" or "litert" for --runtime `requested`; RuntimeUnavailable when it cannot
    run here. `gpu`: a GPU the Keras backend can use (only asked when it matters)."""
    if requested not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, not {requested!r}")
    if requested == "keras" or (requested == "auto" and keras_available and gpu):
        if not keras_available:
            raise missing_train_extra("--runtime keras")
        return "keras"
    if model_has_graph:
        return "litert"
    if requested == "litert":
        raise RuntimeUnavailable("the model file carries no LiteRT graph: export one with "
                                 "`ageseg export MODEL`, or use --runtime keras")
    if not keras_available:
        raise missing_train_extra("a model file without a LiteRT graph")
    return "keras"


def model_threads(cores: int, prep_workers: int) -> int:
    """LiteRT threads for the model worker: the cores the prep workers leave, at least one.
    With as many workers as cores (the default) that is one: prep and model share the
    cores without a second thread pool competing for them."""
    return max(1, cores - prep_workers)
