#!/usr/bin/env bash
# The recipe ablation of docs/ablation.md: one short run per recipe element, on the fast MobileNetV2 0.35
# at the native 150x200, validation only (--no-test). Safe to start again after a session ends: a finished
# run is skipped, a killed one continues from its last epoch (--resume).
#
#   bash tools/run_ablation.sh [RUNS_DIR]        # default: ../runs/ablation beside the repository
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-../runs/ablation}
mkdir -p "$RUNS"

COMMON=(--backbone mobilenet_v2_035 --head-epochs 1 --epochs 10 --patience 0 --no-test --logit-adjustment)
declare -A RECIPES=(
  [a_weights]="--balance weights --lr 1e-4"
  [b_oversample]="--balance oversample --lr 1e-4"
  [c_oversample_lr3e-4]="--balance oversample --lr 3e-4"
  [d_ema]="--balance oversample --lr 3e-4 --ema 0.998"
  [e_strong_aug]="--balance oversample --lr 3e-4 --augment crop_scale=0.35,1 cutout=0.5 colour_constancy=0.5"
  [f_bcn]="--balance oversample --lr 3e-4 --extra-data bcn --extra-per-class 1500 --augment vignette=0.3 blur=0.5"
)
ORDER=(a_weights b_oversample c_oversample_lr3e-4 d_ema e_strong_aug f_bcn)

for name in "${ORDER[@]}"; do
  run="$RUNS/$name" out="$RUNS/$name/model"
  if [ -f "$out/README.md" ]; then echo "== $name: done"; continue; fi
  if [ -f "$run/state.json" ]; then
    echo "== $name: resuming"
    python -m skin_demo train --resume "$run" || exit 1
  else
    echo "== $name: starting"
    # shellcheck disable=SC2086
    python -m skin_demo train "${COMMON[@]}" ${RECIPES[$name]} --out "$out" --run-dir "$run" || exit 1
  fi
done
python tools/ablation_table.py "$RUNS"/*/model --write docs/ablation.md
