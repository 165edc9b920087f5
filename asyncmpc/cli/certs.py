"""Layer 7: ``asyncmpc certs``: the deployment CA and a key and certificate per player."""

from __future__ import annotations

import argparse
from pathlib import Path

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="hosts.toml", help="deployment file (default: hosts.toml)")
    parser.add_argument("--dir", help="where to write (default: the file's [tls] dir)")
    parser.add_argument("--if-missing", action="store_true", help="write nothing when every file is there already")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError
    from asyncmpc.tls import make_certs

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
        return fail("certs", exc)
    except OSError as exc:
        return fail("certs", OSError(f"{folder}: cannot write: {exc.strerror or exc}"))
    print(f"wrote a CA and {len(config.players)} player certificates to {out}")
    return 0
