"""``asyncmpc certs``: the deployment CA and a key and certificate per player."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from asyncmpc.cli.common import add_config, fail

if TYPE_CHECKING:
    from asyncmpc.config import Config

__all__ = ["add_arguments", "command", "ensure_certs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)
    parser.add_argument("--dir", help="where to write (default: the file's [tls] dir)")
    parser.add_argument("--if-missing", action="store_true", help="write nothing when every file is there already")


def ensure_certs(config: Config, folder: str | Path) -> Path | None:
    """Make the deployment's TLS files in ``folder`` unless every one is there; the folder if
    it wrote them."""
    from asyncmpc.net.tls import make_certs

    names = ["ca", *config.players]
    wanted = [Path(folder) / f"{n}.pem" for n in names] + [Path(folder) / f"{n}.key" for n in config.players]
    if all(p.is_file() for p in wanted):
        return None
    return make_certs(config, folder)


def command(args: argparse.Namespace) -> int:
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError
    from asyncmpc.net.tls import make_certs

    folder = args.dir
    try:
        config = load_config(args.config)
        folder = args.dir or config.tls_dir
        if folder is None:
            raise ConfigError(f"{config.path}: [tls] dir: missing, and no --dir given")
        out = ensure_certs(config, folder) if args.if_missing else make_certs(config, folder)
        if out is None:
            return 0
    except ConfigError as exc:
        return fail("certs", exc)
    except OSError as exc:
        return fail("certs", OSError(f"{folder}: cannot write: {exc.strerror or exc}"))
    print(f"wrote a CA and {len(config.players)} player certificates to {out}")
    return 0
