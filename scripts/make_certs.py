#!/usr/bin/env python3
"""Create a deployment CA and a key and certificate for every player of a hosts.toml.

Usage: make_certs.py [--config hosts.toml] [--dir DIR] [--if-missing]
DIR defaults to the file's [tls] dir. Keys are written owner-only (0600). With --if-missing,
nothing is written when every file is already there (what scripts/local.sh uses).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.config import load_config
from asyncmpc.errors import ConfigError
from asyncmpc.tls import make_certs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="hosts.toml")
    ap.add_argument("--dir", help="where to write (default: the file's [tls] dir)")
    ap.add_argument("--if-missing", action="store_true", help="write only if some file is missing")
    args = ap.parse_args()
    try:
        config = load_config(args.config)
        folder = args.dir or config.tls_dir
        if folder is None:
            raise ConfigError(f"{config.path}: [tls] dir: missing, and no --dir given")
        names = ["ca", *config.players]
        wanted = [Path(folder) / f"{n}.pem" for n in names] + [Path(folder) / f"{n}.key" for n in config.players]
        if args.if_missing and all(p.is_file() for p in wanted):
            return 0
        out = make_certs(config, folder)
    except ConfigError as exc:
        print(f"make_certs: {exc}", file=sys.stderr)
        return 2
    print(f"wrote a CA and {len(config.players)} player certificates to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
