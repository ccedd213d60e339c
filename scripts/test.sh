#!/usr/bin/env bash
# The README's test command, and exactly what CI runs. From nothing: apt packages, a NEW virtualenv
# (never reuses what is installed), the project from its own files, a dependency check, lint, the suite.
#   GANHUB_TEST_VENV=path   where the throwaway virtualenv goes (default .venv-test, wiped every run)
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
VENV=${GANHUB_TEST_VENV:-.venv-test}
rm -rf "$VENV"
${PYTHON:-python3} -m venv "$VENV"
[[ "$VENV" = /* ]] || VENV="$PWD/$VENV"
source "$VENV/bin/activate"  # the suite runs console scripts (ganhub, torchrun) as a user would
export PYTHON="$VENV/bin/python"
scripts/install.sh --test
echo "==> deptry: every imported distribution is declared in pyproject.toml (tests' in the test extra)"
$PYTHON -m deptry .
for d in plugins/*/ examples/*/; do  # each plugin is its own distribution with its own declared deps
  [[ -f "$d/pyproject.toml" ]] || continue
  (cd "$d" && $PYTHON -m deptry . >/dev/null) || { (cd "$d" && $PYTHON -m deptry .); exit 1; }
done
echo "==> ruff"
$PYTHON -m ruff check ganhub plugins tests app.py benchmarks scripts $(ls -d examples 2>/dev/null || true)
echo "==> pytest"
$PYTHON -m pytest -q -p no:cacheprovider "$@"
echo "==> test command finished in $((SECONDS - t0)) s"
