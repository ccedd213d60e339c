#!/usr/bin/env bash
# The one command CI runs: install everything (apt + pip) on a fresh machine, lint, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
PY=${PYTHON:-python3}
$PY -m ruff check ganhub plugins tests app.py benchmarks scripts
$PY -m pytest -q -p no:cacheprovider "$@"
