#!/usr/bin/env bash
# Set up (dev) and run the whole check: ruff, the import-layer contracts, the type check, the test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash packaging/setup.sh --dev
export QT_QPA_PLATFORM=offscreen
# medvision's modules compiled once and kept (__pycache__, ignored by git), not again in each of the
# suite's hundred-odd Python processes (0.3 s each) where the machine sets PYTHONDONTWRITEBYTECODE
unset PYTHONDONTWRITEBYTECODE
echo "== ruff"
.venv/bin/ruff check medvision tests benchmarks
echo "== import-linter"
.venv/bin/lint-imports --no-cache
echo "== mypy"
# core, io, annotate and workspace ([tool.mypy] in pyproject.toml); a few seconds cold, under one with its cache
.venv/bin/mypy
echo "== pytest"
# every test, on every core (MEDVISION_TEST_WORKERS=1: one process; each worker gets its share of the CPU
# threads, tests/conftest.py); an idle worker takes tests from a busy one; the slowest tests are listed at the end
.venv/bin/python -m pytest -q -n "${MEDVISION_TEST_WORKERS:-auto}" --dist worksteal --durations=15 "$@"
