#!/usr/bin/env bash
# Measure the bundled weights with the shipped Fashion-MNIST extractor and record the results in each
# folder's config.json (the model cards and README table are built from them).
set -euo pipefail
cd "$(dirname "$0")/.."
for v in "${@:-vanilla dcgan wgan-gp sngan sngan-cond stylegan-lite}"; do
  for name in $v; do
    metrics=fid,kid,pr,coverage
    [[ $name == sngan-cond ]] && metrics+=,accuracy  # conditional: does asking for class k give class k?
    ganhub eval "weights/$name" --metrics "$metrics" --n 5000 --seed 0 --write
  done
done
