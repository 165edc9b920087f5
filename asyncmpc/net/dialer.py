"""Layer 5: reaching the players a node dials, with back-off (asyncio only here and in runtime).

One retry loop serves both uses: at start-up a role reaches its peers within a deadline
(``reach`` with a timeout: PeerLost when it passes, and a TLS certificate error at once, since
retrying will not fix it), and for as long as the node runs it keeps them (``keep``: whenever a
connection closes, dial again, without end, logging once per outage).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from asyncmpc.config import Player
from asyncmpc.errors import PeerLost, RemoteProtocolError

if TYPE_CHECKING:
    from asyncmpc.net.runtime import Node

__all__ = ["FIRST_DELAY", "MAX_DELAY", "Dialer"]

FIRST_DELAY = 0.02
MAX_DELAY = 2.0
"""The longest pause between attempts to reach a player that is down."""


class Dialer:
    """Dials on behalf of ``node`` (which does each attempt: ``Node.dial_once``)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def reach(self, peer: Player, timeout: float | None) -> None:
        """Dial ``peer`` until connected, doubling the pause between attempts up to
        ``MAX_DELAY``. With a ``timeout``: PeerLost once it passes, and at once on a TLS
        error. Without: until it works (or the node closes)."""
        node = self.node
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        attempt = node.config.protocol.handshake_timeout
        delay, logged = FIRST_DELAY, False
        while not node.closing and peer.name not in node.shunned:
            budget = attempt if deadline is None else max(0.01, deadline - loop.time())
            try:
                await node.dial_once(peer, budget)
                return
            except ssl.SSLError as exc:
                if deadline is not None:  # a certificate problem will not fix itself
                    raise PeerLost(
                        f"{node.name}: TLS with {peer.name} at {peer.host}:{peer.port} failed: {exc}"
                    ) from exc
                error = str(exc)
            except (OSError, TimeoutError, PeerLost, RemoteProtocolError) as exc:
                error = str(exc) or type(exc).__name__
            if deadline is not None and loop.time() + delay >= deadline:
                raise PeerLost(
                    f"{node.name}: could not reach {peer.name} at {peer.host}:{peer.port} within {timeout:g}s: {error}"
                )
            if deadline is None and not logged:
                logged = True
                node.log.info("cannot reach %s at %s:%s yet (%s); retrying", peer.name, peer.host, peer.port, error)
            await asyncio.sleep(delay)  # back-off between attempts to reach a peer that is starting
            delay = min(delay * 2, MAX_DELAY)

    async def keep(self, peer: Player) -> None:
        """Stay connected to ``peer``: dial it again whenever its connection closes."""
        node = self.node
        while not node.closing and peer.name not in node.shunned:
            if peer.name in node.peers:
                await node.wait_gone(peer.name)
                continue
            await self.reach(peer, None)
