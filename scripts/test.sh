#!/usr/bin/env bash
# Set up .venv if needed, then check lint, formatting and types, and run the whole test suite
# (extra arguments go to pytest; with any, the lint and type checks are skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$#" -eq 0 ]; then
    .venv/bin/ruff check asyncmpc scripts tests examples
    .venv/bin/ruff format --check asyncmpc scripts tests examples
    .venv/bin/mypy
fi
exec .venv/bin/python -m pytest "$@"
