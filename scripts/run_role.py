#!/usr/bin/env python3
"""Start one asyncmpc player: run_role.py --config hosts.toml --name NAME."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
