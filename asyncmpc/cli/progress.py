"""The model owner's progress: a live bar on a terminal, plain lines elsewhere.

On a terminal (stderr is a TTY), one tqdm bar over the training rounds shows the loss, the test
accuracy, the contributors, the servers of the last round, seconds per round and the ETA; log
lines (warnings, a server lost) are printed above the bar instead of through it. Anywhere else
(a pipe, a file, a log collector), each round is one concise log line, as before.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, Any

__all__ = ["BarProgress", "progress_for"]


class BarProgress:
    """A tqdm bar on ``stream``; the root logger writes above it while it is shown."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._bar: Any = None
        self._handlers: list[logging.Handler] = []

    def start(self, total: int, done: int) -> None:
        from tqdm import tqdm  # imported only on a terminal: players in pipes start without it

        try:  # a terminal that reports no size (a bare pseudo-terminal) gets 100 x 24
            size = os.get_terminal_size(self.stream.fileno())
            sized = size.columns > 0 and size.lines > 0
        except (OSError, ValueError, AttributeError):
            sized = False
        self._bar = tqdm(
            total=total,
            initial=done,
            unit="round",
            file=self.stream,
            dynamic_ncols=sized,
            ncols=None if sized else 100,
            nrows=None if sized else 24,  # tqdm hides a bar below the last row of a 0-row screen
            smoothing=0.1,
        )
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        above = _AboveBar(self._bar)
        if self._handlers:
            above.setFormatter(self._handlers[0].formatter)
            for f in self._handlers[0].filters:
                above.addFilter(f)
        root.handlers[:] = [above]

    def round(self, row: dict[str, Any]) -> bool:
        """Show a finished round on the bar (False before ``start``: log it as a line)."""
        bar = self._bar
        if bar is None:
            return False
        servers = row.get("servers")
        spent = f"eps {row['epsilon']:.2f}, " if "epsilon" in row else ""
        bar.set_postfix_str(
            f"loss {_fmt(row.get('loss'))}, acc {_fmt(row.get('test_accuracy'))}, {spent}"
            f"{len(row['contributors'])} owners, {len(servers) if servers else '-'} servers, "
            f"{row['seconds']:.3f}s/round",
            refresh=False,
        )
        bar.update(1)
        return True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            logging.getLogger().handlers[:] = self._handlers


class _AboveBar(logging.Handler):
    def __init__(self, bar: Any) -> None:
        super().__init__()
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.bar.write(self.format(record), file=self.bar.fp)
        except Exception:
            self.handleError(record)


def progress_for(stream: IO[str] = sys.stderr, *, quiet: bool = False) -> BarProgress | None:
    """A bar when ``stream`` is a terminal (and not ``quiet``); None: the model owner's lines.
    With a bar, the network layer's comings and goings (``connected to server-0``, ``closed the
    connection``) are left out of the terminal unless debug lines are on (``-v``): the model
    owner's own lines say how many players are connected, and a player lost is a warning."""
    isatty = getattr(stream, "isatty", None)
    if quiet or isatty is None or not isatty():
        return None
    root = logging.getLogger()
    if root.getEffectiveLevel() > logging.DEBUG:
        for handler in root.handlers:
            handler.addFilter(_quiet_network)
    return BarProgress(stream)


def _quiet_network(record: logging.LogRecord) -> bool:
    """Whether a record is shown on the terminal with the bar: not the network layer's INFO."""
    return not (record.name.startswith("asyncmpc.net.") and record.levelno == logging.INFO)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
