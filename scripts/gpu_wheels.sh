#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh installs on the GPU machine, downloaded here into one folder.
#
#   bash scripts/gpu_wheels.sh [DIR]          # default DIR: .cache/gpu-wheels (git-ignored)
#   WITH_ONNX=1 bash scripts/gpu_wheels.sh    # also onnx (~17 MB): the onnxruntime rows need it
#   WITH_DATA=0 bash scripts/gpu_wheels.sh    # without the real training images
#   PYVER=3.11 bash scripts/gpu_wheels.sh DIR # for another Python (a dry run of the wheel install here)
#
# The GPU machine has Python 3.12, CUDA torch, triton, onnxruntime, numpy, scipy, scikit-image,
# tifffile, tensorstore, typer and rich, and no internet. What live-pssr's core needs beyond that
# (and pytest for `pytest -m gpu`) is below, pinned to the versions of the development venv; every
# wheel is downloaded without its dependencies (--no-deps), so the folder holds exactly this list.
# Not here, because the GPU check does not use them: matplotlib (calibrate's plot), onnx (unless
# WITH_ONNX=1), the viewer/openvino/mm extras. The real images the default training config reads
# and the mito-holdout evaluation set (from ../shared/data/real, where present) go to DIR/real.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-.cache/gpu-wheels}
PYVER=${PYVER:-3.12}

PACKAGES=(
  # store (zarr v3) and its codecs
  "zarr==3.1.6" "numcodecs==0.16.6" "donfig==0.8.1.post1" "google-crc32c==1.9.0" "packaging==26.4"
  "typing_extensions==4.16.0"
  # model files, configs, training config validation
  "safetensors==0.8.0" "pyyaml==6.0.4" "pydantic==2.14.4" "pydantic-core==2.50.5" "annotated-types==0.8.0"
  "typing-inspection==0.4.5"
  # machine info, offline enhancement with Dask
  "psutil==7.2.2" "dask==2026.8.0" "cloudpickle==3.1.3" "toolz==1.2.0" "partd==1.4.2" "locket==1.0.0"
  "click==8.5.1"  # dask's; recent typer no longer brings it
  # pytest -m gpu
  "pytest==9.2.0" "iniconfig==2.3.1" "pluggy==1.7.0"
)
if [ "${PYVER#3.}" -lt 12 ]; then  # dask's on Python < 3.12
  PACKAGES+=("importlib_metadata==10.2.0" "zipp==4.1.2" "lazy-importer==0.1.0")
fi
if [ "${WITH_ONNX:-0}" = 1 ]; then PACKAGES+=("onnx==1.23.2"); fi

mkdir -p "$DIR"
rm -f "$DIR"/*.whl
for pkg in "${PACKAGES[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "$PYVER" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$DIR" "$pkg"
done

if [ "${WITH_DATA:-1}" = 1 ]; then
  src=${LIVE_PSSR_REAL_DATA:-../shared/data/real}
  mkdir -p "$DIR/real"
  for f in BPAE_mito_bian.tif BPAE_actin_bian.tif BPAE_nuclei_bian.tif \
           mito_yeast_ZYX_mitographtools_BuddingYeastGlucose01.tif \
           mito_yeast_ZYX_mitographtools_BuddingYeastGlucose02.tif \
           hela-cells_lyso-mito-nuclei_imagej-sample_bian.tif mito_mina_test_image.tif; do
    if [ -f "$src/$f" ]; then cp "$src/$f" "$DIR/real/"; fi
  done
fi

echo "wheels in $DIR:"
(cd "$DIR" && ls -l --block-size=K -- *.whl | awk '{print "  " $5 "  " $9}')
echo "wheels total: $(du -cb "$DIR"/*.whl | tail -1 | cut -f1 | awk '{printf "%.1f MiB", $1/1048576}')"
if [ -d "$DIR/real" ]; then
  echo "training images in $DIR/real: $(ls "$DIR/real" | tr '\n' ' ')($(du -sb "$DIR/real" | cut -f1 | awk '{printf "%.1f MiB", $1/1048576}'))"
fi
echo "folder total: $(du -sb "$DIR" | cut -f1 | awk '{printf "%.1f MiB", $1/1048576}') (the device tool carries 64 MiB at most)"
