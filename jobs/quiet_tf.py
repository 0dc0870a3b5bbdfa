"""TensorFlow's start-up lines kept out of the job's stderr (cron logs, `make demo`).

`TF_CPP_MIN_LOG_LEVEL=2` (set by jobs/cli.py before anything imports TensorFlow) silences
TensorFlow's C++ INFO and WARNING logs, but TensorFlow 2.18+ prints its oneDNN notice
through absl before that setting is read ("WARNING: All log messages before
absl::InitializeLog() ...", "I0000 ... oneDNN custom operations are on ..."), and no
variable silences it short of turning oneDNN off (`TF_ENABLE_ONEDNN_OPTS=0`: slower, and
other round-off). So the first `import tensorflow` runs with file descriptor 2 captured, and
every captured line except those two is written back to stderr: errors still show.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

NOISE = re.compile(rb"All log messages before absl::InitializeLog\(\) is called"
                   rb"|oneDNN custom operations are on")


def install() -> None:
    """Filter the first `import tensorflow` of this process (a no-op if already done)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        # Stay until TensorFlow is really imported: `importlib.util.find_spec("tensorflow")`
        # (jobs/extras.py asks whether it is installed) lands here too and imports nothing.
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # once: later imports are TensorFlow's own business
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


@contextmanager
def filtered_stderr(noise: re.Pattern[bytes] = NOISE) -> Iterator[None]:
    """Capture what is written to file descriptor 2 in the block (C++ libraries included);
    afterwards write back every line that `noise` does not match."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with suppress(OSError, ValueError, AttributeError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().splitlines(keepends=True)
                    if not noise.search(line)]
            if kept:
                os.write(2, b"".join(kept))
