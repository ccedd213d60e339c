#!/usr/bin/env bash
# Re-create the bundled weights/: train each variant on Fashion-MNIST (32x32, 1 channel) with ganhub's
# defaults, then keep only what a weights entry ships (config.json, model.safetensors, samples.png).
# Two queues run side by side with one thread each (this is how the shipped weights were made, on a
# 2-core CPU). Usage: scripts/train_weights.sh [name ...]   (default: all six)
# sngan-cond is sngan with num_classes=10; its samples.png is a grid with one row per class.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A STEPS=([vanilla]=160000 [dcgan]=12000 [wgan-gp]=5100 [sngan]=20000 [sngan-cond]=10000 [stylegan-lite]=20000)
# lr_rampdown=0.5: the last half of the steps lowers the learning rates linearly toward 0 (dcgan 0.3: FID 16.1
# at 6,000 steps, where the decay starts, 9.6 at 12,000; see README "Pretrained weights").
# vanilla: spectral norm in D, no dropout in D and a 300 kimg EMA of G (the plugin's defaults are off, 0.3 and
# 10), 160,000 steps at constant rates: FID 36.96 (README "Dropping D's dropout"; the shipped generator is that
# run's 160,000-step checkpoint of a run planned for 300,000, the same steps at constant rates).
# stylegan-lite: plugin 0.3's defaults (lr 5e-3, a 10 kimg EMA), which the weights were trained with as --set
# under 0.2 (the same config; README "What the learning rate changed for stylegan-lite").
# sngan: plugin 0.4's defaults (R1 with dcgan's rates; README "Pretrained weights"). sngan-cond was trained with
# plugin 0.1's defaults (setting C of Miyato et al., no R1), spelled out here.
declare -A SETS=([dcgan]="lr_rampdown=0.5" [sngan]="lr_rampdown=0.5"
                 [vanilla]="ema_half_life_kimg=300 d_spectral_norm=true d_dropout=0"
                 [sngan-cond]="lr_g=2e-4 lr_d=2e-4 betas=0.5,0.999 r1_gamma=0 lr_rampdown=0.5 ema_half_life_kimg=5")
run() {  # name
  local v=$1 variant=$1 extra=()
  [[ $v == sngan-cond ]] && variant=sngan extra=(--precision fp32 --set num_classes=10)
  if [[ -f "runs/weights-$v/checkpoint/training.safetensors" ]]; then
    extra+=(--resume)  # the config is the recorded one
  elif [[ -n "${SETS[$v]:-}" ]]; then
    extra+=(--set "${SETS[$v]}")
  fi
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
