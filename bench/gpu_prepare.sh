#!/usr/bin/env bash
# Run here (with internet), before bench/gpu_check.sh travels to a lent GPU machine: that
# machine has no internet, Python 3.12.3 (/opt/torch/.venv) and an image that already holds
# jax (CUDA), numpy, pandas, pillow, pyarrow, click, packaging, protobuf, flatbuffers, tqdm,
# typing-extensions, h5py, absl-py, rich, matplotlib (device README, KINDS.md). It lacks what
# the check needs beyond those: keras (+ namex, optree) and ai-edge-litert (+ backports.strenum).
#
# 1. downloads exactly those wheels for the GPU machine's Python into WHEEL_DIR;
# 2. proves the set complete for that Python offline: `pip install --dry-run --no-index`
#    over the wheels plus stand-ins for what the image has (downloaded into a check-only
#    folder that never travels) must resolve, every wheel must be used, and no wheel may be
#    one the image already has;
# 3. prints what will travel (the tracked tree read from git now, plus the wheels) and fails
#    if it is over the 64 MiB a device call may carry.
# Scenes are not carried: bench/gpu_check.py renders them on the GPU machine.
#
# Usage: bench/gpu_prepare.sh [PYVER (default 3.12)] [WHEEL_DIR (default var/gpu_check/wheels)]
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${1:-3.12}
WHEELS=${2:-var/gpu_check/wheels}
STANDINS=var/gpu_check_standins/$PYVER  # check only: var/ is ignored and never carried
LIMIT=$((64 * 1024 * 1024))
VPY=.venv/bin/python
# Missing from the image, pinned to what the project's venv runs (tested together), except
# ai-edge-litert: 2.1.0 is its smallest wheel (~9 MiB) and has everything BlazeFace uses.
TRAVEL_DISTS=(keras namex optree backports.strenum)
LITERT=ai-edge-litert==2.1.0
# What the image has that the wheels above depend on: stand-ins for the offline check only.
IMAGE_HAS=(absl-py numpy rich markdown-it-py mdurl pygments h5py ml-dtypes packaging
           typing-extensions flatbuffers tqdm protobuf)
# pip matches each --platform tag exactly: name every manylinux level a wheel may carry
# (ai-edge-litert is manylinux_2_27, optree 2_27/2_28). Not above 2_28: the image's
# PyTorch wheels are manylinux_2_28, so its glibc is at least that, and no newer is known.
PLATFORMS=(--implementation cp --python-version "$PYVER" --platform manylinux2014_x86_64)
for n in $(seq 17 28); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done

quiet_pip() {  # the machine's pip.conf names local indexes that may not exist: drop that noise
  "$VPY" -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
offline_pip() {  # no pip.conf, no PIP_FIND_LINKS: only the folders named here may answer
  env -u PIP_FIND_LINKS -u PIP_CONSTRAINT -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL \
    PIP_CONFIG_FILE=/dev/null "$VPY" -m pip "$@"
}

pins=()
for dist in "${TRAVEL_DISTS[@]}"; do
  version=$("$VPY" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
    "$dist" 2>/dev/null) || { echo "gpu_prepare: $dist is not in .venv: install the project first" >&2; exit 1; }
  pins+=("$dist==$version")
done
pins+=("$LITERT")

echo "== wheels for Python $PYVER into $WHEELS: ${pins[*]}"
rm -rf "$WHEELS" && mkdir -p "$WHEELS"
if [ "$WHEELS" = var/gpu_check/wheels ]; then  # var/gpu_check is what travels: wheels only
  find var/gpu_check -mindepth 1 -maxdepth 1 ! -name wheels -exec rm -rf {} +
fi
quiet_pip download --quiet --only-binary=:all: --no-deps "${PLATFORMS[@]}" \
  --dest "$WHEELS" "${pins[@]}"

echo "== stand-ins for what the image has (check only, not carried) into $STANDINS"
mkdir -p "$STANDINS"
quiet_pip download --quiet --only-binary=:all: --no-deps "${PLATFORMS[@]}" \
  --dest "$STANDINS" "${IMAGE_HAS[@]}"

echo "== completeness for Python $PYVER: pip install --dry-run --no-index over the wheels + stand-ins"
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
offline_pip install --dry-run --ignore-installed --no-index --only-binary=:all: \
  "${PLATFORMS[@]}" --target "$check/target" --find-links "$WHEELS" --find-links "$STANDINS" \
  --report "$check/report.json" --quiet "$WHEELS"/*.whl
"$VPY" - "$check/report.json" "$WHEELS" "${IMAGE_HAS[@]}" <<'PY'
"""Every resolved package comes from the wheels or is one the image has; every wheel is used."""
import json
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

report, wheels, image_has = sys.argv[1], Path(sys.argv[2]).resolve(), sys.argv[3:]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731  (PEP 503)
image = {norm(n) for n in image_has}
travels, from_image, bad = [], [], []
for item in json.load(open(report))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    path = Path(unquote(urlparse(item["download_info"]["url"]).path)).resolve()
    if path.parent == wheels:
        (bad if norm(name) in image else travels).append(f"{name} {version}")
    elif norm(name) in image:
        from_image.append(f"{name} {version}")
    else:
        bad.append(f"{name} {version} (from {path.parent})")
used = {norm(t.split()[0]) for t in travels}
unused = [p.name for p in wheels.glob("*.whl") if norm(p.name.split("-")[0]) not in used]
print(f"resolved offline: {len(travels) + len(from_image)} packages")
print(f"  travel ({len(travels)}): {', '.join(sorted(travels))}")
print(f"  the image has ({len(from_image)}; stand-in versions): {', '.join(sorted(from_image))}")
if bad or unused:
    print(f"FAILED: not allowed {bad}, wheels nobody needs {unused}", file=sys.stderr)
    sys.exit(1)
print("complete: OK")
PY

echo "== what travels with a device call (carry $WHEELS)"
"$VPY" - "$WHEELS" "$LIMIT" <<'PY'
"""The tree as git sees it now (tracked + untracked-not-ignored, shared/) plus the wheels."""
import os
import subprocess
import sys
from pathlib import Path

wheels, limit = Path(sys.argv[1]), int(sys.argv[2])
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        check=True, capture_output=True).stdout.split(b"\0")
tree = sum(os.lstat(f).st_size for f in {f for f in listed if f} if os.path.lexists(f))
shared = sum(p.lstat().st_size for p in Path("shared").rglob("*") if p.is_file())
model = Path("models/default.ageseg")
carried = sum(p.stat().st_size for p in wheels.glob("*.whl"))
total = tree + shared + carried
mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
print(f"working tree {mib(tree)} (of it models/default.ageseg "
      f"{mib(model.stat().st_size if model.exists() else 0)}), shared/ {mib(shared)}, "
      f"wheels {mib(carried)}")
print(f"travel size: {mib(total)} of {mib(limit)} ({mib(limit - total)} to spare)")
if total > limit:
    print("FAILED: over the device call's limit", file=sys.stderr)
    sys.exit(1)
PY
