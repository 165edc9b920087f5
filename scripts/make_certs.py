#!/usr/bin/env python3
"""Create a deployment CA and a key and certificate for every player of a hosts.toml.

Usage: make_certs.py [hosts.toml] [--dir DIR] [--days N] [--force | --if-missing], and the
``ca``, ``request`` and ``sign`` forms: exactly ``asyncmpc certs`` (see its --help). DIR
defaults to the file's [tls] dir. Keys are written owner-only (0600); nothing is overwritten
without --force.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.cli import main

if __name__ == "__main__":
    sys.exit(main(["certs", *sys.argv[1:]]))
