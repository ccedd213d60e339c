#!/usr/bin/env bash
# Re-create the bundled weights/: train each variant on Fashion-MNIST (32x32, 1 channel) with ganhub's
# defaults, then keep only what a weights entry ships (config.json, model.safetensors, samples.png).
# Two queues run side by side with one thread each (this is how the shipped weights were made, on a
# 2-core CPU). Usage: scripts/train_weights.sh [name ...]   (default: all six)
# sngan-cond is sngan with num_classes=10; its samples.png is a grid with one row per class.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A STEPS=([vanilla]=80000 [dcgan]=12000 [wgan-gp]=2000 [sngan]=6500 [sngan-cond]=12000 [stylegan-lite]=15000)
run() {  # name
  local v=$1 variant=$1 extra=()
  [[ $v == sngan-cond ]] && variant=sngan extra=(--precision fp32 --set num_classes=10)
  [[ -f "runs/weights-$v/checkpoint/training.safetensors" ]] && extra+=(--resume)
  OMP_NUM_THREADS=1 ganhub train "$variant" --dataset fashion-mnist --steps "${STEPS[$v]}" --seed 0 \
    --out "runs/weights-$v" --checkpoint-every 1000 --quiet "${extra[@]}"
  mkdir -p "weights/$v"
  cp "runs/weights-$v/config.json" "runs/weights-$v/model.safetensors" "runs/weights-$v/samples.png" "weights/$v/"
  [[ $v == sngan-cond ]] && ganhub sample "weights/$v" --grid-per-class 8 --seed 0 --out "weights/$v/samples.png"
  return 0
}
if (( $# )); then for v in "$@"; do run "$v"; done; exit 0; fi
(run stylegan-lite) &
(run dcgan; run wgan-gp; run sngan; run sngan-cond; run vanilla) &
wait
