#!/usr/bin/env bash
# Run a whole deployment as processes on this machine: scripts/local.sh [CONFIG] [--out DIR] [--fresh]
#
# Sets up .venv if needed, then runs `asyncmpc local`: starts every player in CONFIG (default
# hosts.toml), shows the model owner's progress, and supervises: a player that exits is
# reported (name, status, last lines of its log) and the others go on while the model owner
# runs. Exits with the model owner's status; on Ctrl-C it stops every player it started.
# Logs go to DIR/logs, the model owner's outputs to DIR (default runs/latest). Run again with
# the same DIR, it resumes the model owner's checkpoint (after a crash, or with more rounds);
# --fresh starts training afresh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m asyncmpc local "$@"
