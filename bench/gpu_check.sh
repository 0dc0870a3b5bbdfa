#!/usr/bin/env bash
# The GPU check, for a lent GPU machine with JAX (and PyTorch) but no TensorFlow and no
# internet: installs only the wheels bench/gpu_prepare.sh left in var/gpu_check/wheels
# (what is missing there: Keras, ai-edge-litert, ...), then runs bench/gpu_check.py on
# Keras' JAX backend: the model alone at batch 64/256/1024 in mixed precision, and end to
# end with 1 and with one prep worker per core. Under 5 minutes.
# Usage (from the repository root, var/gpu_check carried along): bench/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=$PWD
missing=$($PY - <<'PY'
import importlib.util
names = {"keras": "keras", "ai_edge_litert": "ai-edge-litert", "pandas": "pandas",
         "PIL": "pillow", "jax": "jax"}
print(" ".join(pkg for mod, pkg in names.items() if importlib.util.find_spec(mod) is None))
PY
)
if [ -n "$missing" ]; then
  echo "installing from var/gpu_check/wheels: $missing"
  $PY -m pip install --quiet --no-index --find-links var/gpu_check/wheels $missing
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
timeout 280 $PY bench/gpu_check.py "$@"
