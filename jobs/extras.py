"""What the core install lacks: TensorFlow, Keras and mtcnn come with the `train` extra.

The core install scores photos on LiteRT (issue 32): a CPU node needs no TensorFlow (2.3 GB,
most of a night's start-up). Commands that do need it (train, evaluate, export, the Keras
runtime, the MTCNN detector) check here first and fail with exit 1 and one line naming the
extra, instead of a traceback from deep inside an import.
"""

from __future__ import annotations

import importlib.util
import os

from jobs.errors import JobFailed

TRAIN_EXTRA = "train"  # pyproject's optional dependencies with TensorFlow, Keras and mtcnn


class MissingExtra(JobFailed):
    """A command needs packages of an extra that this install lacks (exit 1, one line)."""


def installed(module: str) -> bool:
    """Whether a top-level module can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses it, a broken install
        return False


def keras_installed() -> bool:
    """Whether Keras and its backend (KERAS_BACKEND, TensorFlow by default) are installed."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return installed("keras") and installed(backend)


def missing_train_extra(what: str) -> MissingExtra:
    """The error of a command that needs TensorFlow where it is not installed."""
    return MissingExtra(f"{what} needs TensorFlow and Keras, which this install lacks: "
                        f"pip install 'ageseg[{TRAIN_EXTRA}]'")


def require_train_extra(what: str) -> None:
    """Raise `MissingExtra` naming `what` unless TensorFlow and Keras are installed."""
    if not (keras_installed() and installed("tensorflow")):
        raise missing_train_extra(what)
