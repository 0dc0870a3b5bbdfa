"""The wheel built from the repository carries the detector's network and the shipped model,
and building it raises no setuptools warning about undeclared package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_blazeface_weights_without_a_packaging_warning(tmp_path):
    # No build isolation: the dev extra's setuptools builds it, nothing is downloaded.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("ageseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"models/weights/face_detection_back.tflite", "models/weights/NOTICE",
            "models/default.ageseg", "models/MODEL_CARD.md"} <= names
    assert "absent from the `packages` configuration" not in result.stdout + result.stderr
