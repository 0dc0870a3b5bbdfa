#!/usr/bin/env bash
# The GPU check as the GPU machine would run it, on this CPU machine: a fresh venv holding
# only what the GPU image has that the check uses (jax on the CPU here, no TensorFlow, no
# Keras, no ai-edge-litert), the wheels bench/gpu_prepare.sh downloads for THIS Python,
# installed by bench/gpu_check.sh with --no-index, then `gpu_check.sh --quick`. Exit 0 only
# if the check exits 0, installed offline, and printed the line of every stage it planned.
# Needs internet (the venv's packages come from PyPI) and the project's .venv (for pins).
#
# Usage: bench/gpu_dryrun.sh [PYTHON (default: the interpreter .venv was made from)]
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${1:-$(.venv/bin/python -c 'import sys; print(sys._base_executable)')}
PYVER=$("$BASE" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
DRY=var/gpu_dryrun
VENV=$DRY/venv-$PYVER
WHEELS=$DRY/wheels-$PYVER
# What the GPU image has (device KINDS.md) that the check imports; jax is its CPU build here.
IMAGE=(jax numpy pandas pillow pyarrow click packaging protobuf flatbuffers tqdm
       typing-extensions h5py absl-py rich matplotlib)

echo "== fresh venv $VENV ($("$BASE" -V)) with what the image has: ${IMAGE[*]}"
rm -rf "$VENV" && "$BASE" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${IMAGE[@]}" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import importlib.util
import sys

present = [m for m in ("tensorflow", "keras", "ai_edge_litert") if importlib.util.find_spec(m)]
if present:
    sys.exit(f"dry run: the fresh venv already has {present}: not the GPU image")
names = ("jax", "jaxlib", "numpy", "pandas", "pillow", "matplotlib", "click")
print("venv: " + ", ".join(f"{n} {md.version(n)}" for n in names) + "; no TensorFlow, Keras, LiteRT")
PY

echo "== bench/gpu_prepare.sh $PYVER $WHEELS"
bench/gpu_prepare.sh "$PYVER" "$WHEELS"

echo "== bench/gpu_check.sh --quick --allow-cpu (PYTHON=$VENV/bin/python)"
log=$DRY/check-$PYVER.log
set +e
PYTHON=$VENV/bin/python GPU_CHECK_WHEELS=$WHEELS bench/gpu_check.sh --quick --allow-cpu \
  2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
"$BASE" - "$log" "$rc" <<'PY'
import re
import sys

text, rc = open(sys.argv[1]).read(), int(sys.argv[2])
plan = re.search(r"^plan: (.+)$", text, re.M)
planned = plan.group(1).split() if plan else []
seen = dict(re.findall(r"\] stage (\S+): (.*)$", text, re.M))
problems = [f"gpu_check.sh exited {rc}"] if rc else []
problems += [] if planned else ["no plan line"]
problems += [f"stage {s} printed no line" for s in planned if s not in seen]
problems += [f"stage {s} failed" for s, line in seen.items() if line.startswith("FAILED")]
if "installing from" not in text:
    problems.append("nothing was installed from the wheels (the venv was not bare)")
if problems:
    sys.exit("dry run FAILED: " + "; ".join(problems))
print(f"dry run OK: offline install, {len(planned)} stages, each printed its line: "
      + " ".join(planned))
PY
