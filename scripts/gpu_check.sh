#!/usr/bin/env bash
# The GPU check in one call (docs/gpu.md): install the carried wheels, then every GPU measurement.
#
#   OUT=DIR [WHEELS=.cache/gpu-wheels] [PYTHON=python3] [GPU_CHECK_BUDGET_S=450] bash scripts/gpu_check.sh
#
# 1. Wheels: where WHEELS holds *.whl (made by scripts/gpu_wheels.sh), they are installed without
#    their dependencies into a folder of their own (pip --target; by unzipping where pip refuses),
#    which goes first on PYTHONPATH with the repository: the machine's own Python and packages
#    (CUDA torch, triton, ...) stay as they are, nothing is installed system-wide. Real images
#    carried in WHEELS/real become $LIVE_PSSR_REAL_DATA (the default training config reads them).
#    Without wheels (or with wheels for another Python version) the Python is used as it is.
#    The Python: $PYTHON, else the checkout's .venv/bin/python, else python3.
# 2. scripts/gpu_check.py --out OUT: the steps, each timed and bounded (see its docstring), within
#    GPU_CHECK_BUDGET_S seconds (default 450: under 8 minutes with the install).
# Writes OUT/gpu_check.json (results), OUT/gpu_check.log (everything printed), OUT/install.json,
# OUT/steps/*.json, OUT/bench_engines.json, OUT/pytest_gpu.xml. Exit status: 0 when every step
# passed or was skipped with a reason, 1 otherwise.
set -uo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WHEELS=${WHEELS:-.cache/gpu-wheels}
exec > >(tee "$OUT/gpu_check.log") 2>&1
t0=$(date +%s)
echo "[gpu-check] $(date -Is) repo $REPO, out $OUT, wheels $WHEELS"

# the Python: $PYTHON, else this checkout's .venv (a development machine), else python3 (the GPU machine)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
mode=as-is
missing_pip=""
have_wheels=""
if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  tag=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  other=$(ls "$WHEELS"/*.whl | grep -E -- '-cp3[0-9]+-cp3[0-9]+-' | grep -v -- "-$tag-$tag-" | head -1)
  if [ -n "$other" ]; then
    echo "[gpu-check] the wheels in $WHEELS are for another Python than $PY ($tag): $(basename "$other");" \
         "using $PY as it is"
  else
    have_wheels=1
  fi
fi
if [ -n "$have_wheels" ]; then
  DEPS=${GPU_CHECK_DEPS:-/tmp/live-pssr-gpu-deps}
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  echo "[gpu-check] installing $(ls "$WHEELS"/*.whl | wc -l) wheels into $DEPS"
  if "$PY" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check \
       --target "$DEPS" "$WHEELS"/*.whl; then
    mode=pip-target
  else
    echo "[gpu-check] pip could not install them: unpacking the wheels instead"
    missing_pip=1
    "$PY" - "$DEPS" "$WHEELS" <<'EOF'
import sys, zipfile, pathlib
deps, wheels = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for w in sorted(wheels.glob("*.whl")):
    zipfile.ZipFile(w).extractall(deps)
EOF
    mode=unzipped
  fi
  export PYTHONPATH="$DEPS:$REPO${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ -d "$WHEELS/real" ] && [ -z "${LIVE_PSSR_REAL_DATA:-}" ]; then
  export LIVE_PSSR_REAL_DATA=$(cd "$WHEELS/real" && pwd)
fi
export LIVE_PSSR_CACHE=${LIVE_PSSR_CACHE:-/tmp/live-pssr-gpu-check-cache}  # a first start: auto calibrates
rm -rf "$LIVE_PSSR_CACHE"
t1=$(date +%s)
cat > "$OUT/install.json" <<EOF
{"mode": "$mode", "python": "$(command -v "$PY" || echo "$PY")", "wheels": "$WHEELS",
 "wheel_count": $(ls "$WHEELS"/*.whl 2>/dev/null | wc -l), "pip_failed": ${missing_pip:-0},
 "pythonpath": "$PYTHONPATH", "real_data": "${LIVE_PSSR_REAL_DATA:-}", "install_s": $((t1 - t0))}
EOF
echo "[gpu-check] python $PY ($("$PY" --version 2>&1)), install mode $mode in $((t1 - t0)) s"

"$PY" scripts/gpu_check.py --out "$OUT"
rc=$?
echo "[gpu-check] finished in $(( $(date +%s) - t0 )) s, exit status $rc; results in $OUT/gpu_check.json"
exit $rc
