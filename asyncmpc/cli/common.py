"""What every subcommand shares: one-line errors."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_config", "fail"]


def add_config(parser: argparse.ArgumentParser) -> None:
    """The deployment-file option every subcommand that reads one takes."""
    parser.add_argument("--config", default="hosts.toml", help="deployment file (default: hosts.toml)")


def fail(who: str, exc: BaseException, *, verbose: bool = False) -> int:
    """Print an operational error as one line (without repeating ``who``; after its traceback
    when ``verbose``); exit status 2."""
    if verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    print(f"asyncmpc: {who}: {str(exc).removeprefix(f'{who}: ')}", file=sys.stderr)
    return 2
