"""Run `ageseg` with its arguments and SIGKILL the process itself at a named phase.

    python tests/kill_at.py PHASE ageseg-arguments...

A real kill -9 at a known point, not after a guessed sleep: on a busy machine a fixed delay
lands in another phase than the one a test means, or after the run has finished. The phase's
function is wrapped where the job looks it up; the wrapper kills the process before or after
the real call. Exit status 0 means the phase was never reached (the test then fails).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


# phase: (module, function, which call, kill before the call (else after it))
PHASES = {
    "lock_taken": ("jobs.runner", "check_ready", 1, True),  # lock held, nothing read yet
    "model_loaded": ("jobs.runner", "load_scoring", 1, False),
    "scoring": ("models.score", "estimate_batch", 2, True),  # one batch scored, more to go
    "staged": ("analytics.parquet", "_commit", 1, True),  # every file staged, none renamed
    "between_renames": ("analytics.parquet", "_commit", 2, True),  # one table replaced
    "written": ("analytics.pipeline", "record_quarantine", 1, True),  # files, no marker/ok
}


def arm(phase: str) -> None:
    """Wrap the phase's function so the process kills itself there."""
    module_name, name, which, before = PHASES[phase]
    module = importlib.import_module(module_name)
    real = getattr(module, name)
    calls = 0

    def wrapper(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == which and before:
            _die()
        result = real(*args, **kwargs)
        if calls == which:
            _die()
        return result

    setattr(module, name, wrapper)


if __name__ == "__main__":
    arm(sys.argv[1])
    from jobs.cli import cli

    cli(args=sys.argv[2:], prog_name="ageseg", standalone_mode=True)
