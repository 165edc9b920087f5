"""Layer 7: what every subcommand shares: one-line errors."""

from __future__ import annotations

import sys

__all__ = ["fail"]


def fail(who: str, exc: BaseException) -> int:
    """Print an operational error as one line (without repeating ``who``); exit status 2."""
    print(f"asyncmpc: {who}: {str(exc).removeprefix(f'{who}: ')}", file=sys.stderr)
    return 2
