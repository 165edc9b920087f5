#!/usr/bin/env bash
# Set up .venv if needed, then check lint, formatting and types, and run the whole test suite,
# process tests included (-m ""), in parallel (pytest-xdist). Extra arguments go to pytest; with
# any, the lint and type checks are skipped (e.g. `scripts/test.sh -m adversarial`, or `-n 0`
# to run serially). Plain `pytest` is the fast lane: every test but the process tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if [ "$#" -eq 0 ]; then
    .venv/bin/ruff check asyncmpc scripts tests examples
    .venv/bin/ruff format --check asyncmpc scripts tests examples
    .venv/bin/mypy
fi
exec .venv/bin/python -m pytest -m "" -n auto --dist worksteal "$@"
