#!/usr/bin/env bash
# Run here, before bench/gpu_check.sh travels to a GPU machine that has JAX and no internet:
# writes var/gpu_check/ with the wheels the scoring path needs beyond jax (Keras and its
# small dependencies, ai-edge-litert for BlazeFace, pandas, Pillow) for that machine's
# Python, and 100 checkout scenes to score. About 50 MiB: under the 64 MiB that may travel.
# Usage: bench/gpu_prepare.sh [python version of the GPU machine, e.g. 3.11]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
OUT=var/gpu_check
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/scenes"
.venv/bin/pip download --quiet --only-binary=:all: --no-deps --dest "$OUT/wheels" \
  --python-version "$PY" --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
  "keras>=3.8,<4" "ai-edge-litert>=2.1,<3" namex optree absl-py rich markdown-it-py mdurl \
  pygments h5py "pandas>=2.2,<4" python-dateutil pytz tzdata "pillow>=10.3,<14"
.venv/bin/python - "$OUT/scenes" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from demo.scenes import available_demo_faces, render_checkout_scene

faces = available_demo_faces()
for i in range(100):
    scene = render_checkout_scene(faces[i % len(faces)][0], np.random.default_rng(i)).image
    Image.fromarray(scene).save(Path(sys.argv[1]) / f"s{i:03d}.jpg", quality=90)
PY
du -sh "$OUT"
