"""The event loop a player runs on (uvloop where it is installed)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["run"]


def run(main: Callable[[], Awaitable[Any]], *, uvloop_ok: bool = True) -> Any:
    """Run a coroutine function on uvloop where it is installed (and ``uvloop_ok``), else on
    asyncio's own loop.

    TLS deployments pass ``uvloop_ok=False``: the server side of a connection does its TLS
    handshake with ``loop.start_tls`` (so a refused peer can be logged with its address and the
    reason), and uvloop's server-side ``start_tls`` resets such connections.
    """
    try:
        if not uvloop_ok:
            raise ImportError
        import uvloop
    except ImportError:
        return asyncio.run(main())  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())  # type: ignore[arg-type]
