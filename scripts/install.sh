#!/usr/bin/env bash
# Install ganhub, its five built-in plugins and what they need, on a fresh Debian/Ubuntu-like machine.
#   scripts/install.sh          the library, CLI and app
#   scripts/install.sh --test   also the test tools and Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WANT_TEST=0; [[ "${1:-}" == "--test" ]] && WANT_TEST=1

apt_pkgs=()
[[ -d /usr/share/datasets/fashion-mnist ]] || apt_pkgs+=(dataset-fashion-mnist)
[[ $WANT_TEST == 1 && ! -x /usr/bin/chromium ]] && apt_pkgs+=(chromium)
if (( ${#apt_pkgs[@]} )); then
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
  if command -v apt-get >/dev/null; then
    echo "==> apt-get install ${apt_pkgs[*]}"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
  else
    echo "note: no apt-get; Fashion-MNIST will be downloaded by torchvision on first use" >&2
  fi
fi

# torch first, exactly this pair: torchvision from the index does not import beside another torch build.
if ! $PY -c "import torch, torchvision" 2>/dev/null; then
  echo "==> pip install torch torchvision"
  # On Linux x86_64 PyPI's torch is the CUDA build: a whole test environment takes about 6.2 GB (du of a fresh
  # .venv-test), more while pip unpacks. Say so up front: pip's own "No space left on device" names no size.
  prefix=$($PY -c 'import sys; print(sys.prefix)')
  free_gb=$(df -Pk "$prefix" | awk 'NR == 2 {print int($4 / 1048576)}')
  if (( free_gb < 9 )); then
    echo "warning: $free_gb GB free under $prefix; an environment with torch takes about 6.2 GB, and pip needs" \
         "room for the downloaded wheels on top until it finishes" >&2
  fi
  $PY -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
extras="app"; [[ $WANT_TEST == 1 ]] && extras="app,test,tensorboard"  # tests cover the optional TensorBoard logging too
echo "==> pip install ganhub[$extras] and plugins/*"
$PY -m pip install -q -e ".[$extras]" $(printf -- "-e %s " plugins/*/)
