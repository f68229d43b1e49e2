#!/usr/bin/env bash
# Reproduce every shipped model: train each configs/NAME.yaml into models/NAME.safetensors, then
# evaluate it (live-pssr evaluate's data sets) and write its model card models/NAME.md.
#
#   scripts/train_models.sh                      # all four shipped models
#   scripts/train_models.sh mito-sr4-fast        # one of them
#   MAX_MINUTES=30 THREADS=8 scripts/train_models.sh
#
# Needs the real data (../shared/data/real beside the repository, or $LIVE_PSSR_REAL_DATA).
# Each config carries its own step count and time limit (train.steps / train.max_minutes, set for
# 2 shared CPU cores: ~10-20 minutes per model); on a GPU the same configs finish in a minute or two.
# Checkpoints go to $CKPT_DIR/NAME (default /tmp/live-pssr-checkpoints); a killed run continues with
#   live-pssr train --config configs/NAME.yaml --resume $CKPT_DIR/NAME/last.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CKPT_DIR=${CKPT_DIR:-/tmp/live-pssr-checkpoints}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=(mito-sr4-fast mito-sr4-mf denoise-fast pssr-resunet-sr4)

for name in "${MODELS[@]}"; do
  args=(--config "configs/$name.yaml" --out "models/$name.safetensors" --checkpoint-dir "$CKPT_DIR/$name")
  [ -n "${MAX_MINUTES:-}" ] && args+=(--max-minutes "$MAX_MINUTES")
  [ -n "${THREADS:-}" ] && args+=(--threads "$THREADS")
  echo "== training $name"
  "$PY" -m live_pssr.train "${args[@]}"
  case "$name" in
    denoise-*) evals=(--eval fmd-holdout --eval sim-timelapse --failures fmd-holdout) ;;
    *) evals=(--eval mito-holdout --eval class-holdout --eval sim-timelapse
              --failures mito-holdout --failures class-holdout) ;;
  esac
  echo "== evaluating $name and writing models/$name.md"
  "$PY" -m live_pssr.train.card "models/$name.safetensors" "${evals[@]}"
done
