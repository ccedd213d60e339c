#!/usr/bin/env bash
# Install (first run only takes minutes) and start the app on the bundled weights: http://127.0.0.1:7860
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
exec ${PYTHON:-python3} app.py "$@"
