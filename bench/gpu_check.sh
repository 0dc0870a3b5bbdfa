#!/usr/bin/env bash
# The GPU check, on a lent GPU machine: JAX with CUDA, no TensorFlow, no internet, Python
# 3.12 (/opt/torch/.venv, the plain `python3` there). Installs, offline, only what the
# image lacks from the wheels bench/gpu_prepare.sh left in var/gpu_check/wheels (carry
# var/gpu_check), then runs bench/gpu_check.py on Keras' JAX backend. The whole script,
# install included, stops at GPU_CHECK_LIMIT seconds (default 300).
#
# Usage (repository root): bench/gpu_check.sh [gpu_check.py options: --quick, sizes...]
# Env: PYTHON (default python3), GPU_CHECK_WHEELS (default var/gpu_check/wheels),
#      GPU_CHECK_LIMIT (default 300). Exit codes: gpu_check.py's (0 ok, 3 no GPU, 5
#      TensorFlow imported, 6 a stage failed), 4 a module is missing and not among the
#      wheels, 124 the time limit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-var/gpu_check/wheels}
LIMIT=${GPU_CHECK_LIMIT:-300}
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3 PYTHONPATH=$PWD PYTHONUNBUFFERED=1

# Every module the check imports, itself or through its imports (keras, ai-edge-litert,
# jax, pandas, the scenes' portraits), and the distribution that brings it. The image has
# all but the last four lines' (gpu_prepare.sh's wheels). click: jobs.errors imports it.
MODULES="
jax:jax jaxlib:jaxlib ml_dtypes:ml-dtypes opt_einsum:opt-einsum scipy:scipy
numpy:numpy pandas:pandas dateutil:python-dateutil PIL:pillow pyarrow:pyarrow
click:click packaging:packaging h5py:h5py absl:absl-py rich:rich
markdown_it:markdown-it-py pygments:pygments google.protobuf:protobuf
flatbuffers:flatbuffers tqdm:tqdm typing_extensions:typing-extensions
matplotlib:matplotlib
keras:keras namex:namex optree:optree
ai_edge_litert:ai-edge-litert backports.strenum:backports.strenum
"
missing() {  # distributions whose module is not importable by $PY
  "$PY" - $MODULES <<'PY'
import importlib.util
import sys

out = []
for pair in sys.argv[1:]:
    module, dist = pair.split(":")
    try:
        found = importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package (backports, google) is absent
        found = False
    if not found:
        out.append(dist)
print(" ".join(out))
PY
}

echo "gpu_check: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
need=$(missing)
if [ -n "$need" ]; then
  unknown=""
  for dist in $need; do
    ls "$WHEELS"/"$(echo "$dist" | tr '-' '_' | tr '.' '_')"-*.whl >/dev/null 2>&1 \
      || ls "$WHEELS"/"$dist"-*.whl >/dev/null 2>&1 || unknown="$unknown $dist"
  done
  if [ -n "$unknown" ]; then
    echo "gpu_check: missing and not among the wheels in $WHEELS:$unknown" >&2
    exit 4
  fi
  echo "gpu_check: installing from $WHEELS (offline): $need"
  # Into $PY's environment, so pip checks the wheels' needs against what the image has.
  if ! env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --quiet \
      --no-index --only-binary=:all: --no-cache-dir --find-links "$WHEELS" \
      --root-user-action=ignore $need; then
    # A version the image has that pip refuses: install the wheels alone beside it.
    echo "gpu_check: that install failed; installing the wheels without their needs" >&2
    "$PY" -m pip install --quiet --no-index --no-deps --no-cache-dir --root-user-action=ignore \
      --target var/gpu_check/site "$WHEELS"/*.whl
    export PYTHONPATH=$PWD:$PWD/var/gpu_check/site
  fi
  need=$(missing)
  if [ -n "$need" ]; then echo "gpu_check: still missing: $need" >&2; exit 4; fi
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "gpu_check: no nvidia-smi"
left=$((LIMIT - SECONDS))
[ "$left" -gt 0 ] || { echo "gpu_check: ${LIMIT}s limit reached while installing" >&2; exit 124; }
rc=0
timeout -k 10 "$left" "$PY" bench/gpu_check.py "$@" || rc=$?
[ "$rc" -ne 124 ] || echo "gpu_check: stopped at the ${LIMIT}s limit" >&2
exit "$rc"
