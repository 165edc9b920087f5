"""What every subcommand shares: one-line errors."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_config", "config_path", "fail"]


def add_config(parser: argparse.ArgumentParser) -> None:
    """The deployment file every subcommand that reads one takes: ``--config FILE``, or FILE
    alone as ``local`` takes it (``config_path`` reconciles the two)."""
    parser.add_argument("config_file", nargs="?", metavar="FILE", help="deployment file (as --config)")
    parser.add_argument("--config", default=None, help="deployment file (default: hosts.toml)")


def config_path(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Set ``args.config`` from FILE or ``--config`` (hosts.toml when neither is given); both,
    naming different files, is a usage error."""
    given = getattr(args, "config_file", None)
    if given is not None and args.config is not None and given != args.config:
        parser.error(f"two deployment files: {given} and --config {args.config}")
    args.config = given or args.config or "hosts.toml"


def fail(who: str, exc: BaseException, *, verbose: bool = False) -> int:
    """Print an operational error as one line (without repeating ``who``; after its traceback
    when ``verbose``); exit status 2."""
    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"asyncmpc: {who}: {str(exc).removeprefix(f'{who}: ')}", file=sys.stderr)
    return 2
