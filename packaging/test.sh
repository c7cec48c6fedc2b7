#!/usr/bin/env bash
# Set up (dev) and run the whole check: ruff, the import-layer contracts, the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash packaging/setup.sh --dev
export QT_QPA_PLATFORM=offscreen
echo "== ruff"
.venv/bin/ruff check medvision tests benchmarks
echo "== import-linter"
.venv/bin/lint-imports --no-cache
echo "== pytest"
.venv/bin/python -m pytest -q "$@"
