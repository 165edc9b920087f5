#!/usr/bin/env python3
"""Create a deployment CA and a key and certificate for every player of a hosts.toml.

Usage: make_certs.py [--config hosts.toml] [--dir DIR] [--if-missing] (as ``asyncmpc certs``).
DIR defaults to the file's [tls] dir. Keys are written owner-only (0600). With --if-missing,
nothing is written when every file is already there (what scripts/local.sh uses).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.cli import main

if __name__ == "__main__":
    sys.exit(main(["certs", *sys.argv[1:]]))
