#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv with the package and its
# test dependencies. Idempotent: reinstalls only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.asyncmpc-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    # setuptools prints its editable-install banner as a warning, which --quiet lets through
    PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet -e '.[test,plot]'
    touch "$stamp"
fi
