#!/usr/bin/env bash
# Ship one checkpoint as a bundled weights entry: weights/NAME gets the folder's config.json,
# model.safetensors and samples.png (the grid training drew at that step), then its scores
# (scripts/eval_weights.sh, recorded in its config.json) and its model card. The README's table is then
# `python scripts/weights_table.py`'s output.
#   scripts/ship_checkpoint.sh sngan runs/curve/at-20000     # a benchmarks/train_curve.py checkpoint
#   scripts/ship_checkpoint.sh dcgan runs/my-run             # or a whole run's folder
set -euo pipefail
cd "$(dirname "$0")/.."
if (( $# != 2 )); then
  echo "usage: scripts/ship_checkpoint.sh NAME FOLDER" >&2; exit 2
fi
name=$1 src=$2
if [[ ! $name =~ ^[a-z0-9][a-z0-9-]*$ ]]; then
  echo "error: NAME must be a weights entry's name such as sngan-cond, not '$name'" >&2; exit 2
fi
for f in config.json model.safetensors samples.png; do
  if [[ ! -f "$src/$f" ]]; then
    echo "error: $src has no $f; a run folder or a train_curve.py at-<step> folder has all three" >&2; exit 2
  fi
done
mkdir -p "weights/$name"
cp "$src/config.json" "$src/model.safetensors" "$src/samples.png" "weights/$name/"
scripts/eval_weights.sh "$name"
card='import sys; from ganhub.hub import write_model_card; print(write_model_card(sys.argv[1]))'
"${PYTHON:-python}" -c "$card" "weights/$name"
