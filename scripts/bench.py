#!/usr/bin/env python3
"""Secure aggregation against the plaintext floor: ``asyncmpc bench`` (see ``asyncmpc/cli/benchmark.py``).

Usage: bench.py [--d 10000 1000000] [--owners 3 10] [--rounds 5] [--modes secure plain secure-norm]
                [--norm-bound 1000] [--tls off|on|both] [--repeat 1] [--mac-rounds always] [--mac-window N]
                [--down-server SERVER] [--program PLAYER=COMMAND] [--json]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
