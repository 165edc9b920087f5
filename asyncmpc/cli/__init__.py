"""The ``asyncmpc`` command and its subcommands (argparse: in the standard library,
fast to import, and enough for subcommands whose help ends in an example).

Exit codes: 0 success, 2 an operational error (one line on stderr: configuration, files,
network, protocol), 1 a bug (with a traceback), 130 interrupted. Each subcommand lives in its
own module and imports what it needs only when it runs, so a player starts fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

_EXAMPLES = {
    "run": "example: asyncmpc run --config hosts.toml --name server-0",
    "certs": "example: asyncmpc certs --config hosts.toml",
    "check": "example: asyncmpc check --config hosts.toml --connect --name data-owner-0",
    "predict": "example: asyncmpc predict runs/latest/model.npz new.csv --out predictions.csv",
    "report": "example: asyncmpc report runs/latest",
    "local": "example: asyncmpc local hosts.toml --out runs/latest",
    "bench": "example: asyncmpc bench --d 1000000 --owners 3 --rounds 5 --repeat 2",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asyncmpc",
        description="Secure aggregation for federated learning: every player is its own process.",
        epilog="asyncmpc COMMAND --help tells more.\nexample: asyncmpc run --config hosts.toml --name model-owner",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, summary in [
        ("run", "run one player of a deployment (what scripts/run_role.py starts)"),
        ("local", "run a whole deployment as processes on this machine, supervised (what scripts/local.sh runs)"),
        ("certs", "create the deployment CA and a key and certificate per player"),
        ("check", "validate a hosts.toml, print the deployment as a table, and try the peers"),
        ("bench", "time secure aggregation against plaintext averaging, every player a process on this machine"),
        ("predict", "predict with a saved model.npz on the rows of a CSV file"),
        ("report", "summarize a run folder and plot its loss and test accuracy (training.png)"),
    ]:
        cmd = sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=_EXAMPLES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _module(name).add_arguments(cmd)
    return parser


def _module(name: str):  # type: ignore[no-untyped-def]
    import importlib

    return importlib.import_module(f"asyncmpc.cli.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0].startswith("-") and args[0] not in ("-h", "--help"):
        args = ["run", *args]  # the player options alone: as before subcommands
    parser = build_parser()
    ns = parser.parse_args(args)
    if hasattr(ns, "config_file"):
        from asyncmpc.cli.common import config_path

        config_path(ns, parser)
    return int(_module(ns.command).command(ns))
