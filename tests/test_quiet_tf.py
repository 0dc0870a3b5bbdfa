"""The job's stderr carries no TensorFlow start-up chatter (the oneDNN notice that
TF_CPP_MIN_LOG_LEVEL cannot silence), and real error lines written meanwhile still show."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import os, sys
import jobs.cli  # what `ageseg` and `make demo` import first
from jobs.quiet_tf import filtered_stderr
from jobs.scoring_setup import load_scoring
from jobs.settings import Settings

with filtered_stderr():
    os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. ...\\n")
    os.write(2, b"E0000 a real problem\\n")
model, detector = load_scoring(Settings(model_path=sys.argv[1]))
print("loaded", model.version, "tensorflow" in sys.modules)
"""


def test_loading_the_model_prints_no_tensorflow_start_up_lines(tiny_model_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "AGESEG_"))}  # the job's own defaults, not the tests'
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tiny_model_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("loaded test-tiny True")
    assert "E0000 a real problem" in proc.stderr
    for noise in ("oneDNN", "absl::InitializeLog", "I0000"):
        assert noise not in proc.stderr, proc.stderr
