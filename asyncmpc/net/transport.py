"""What a role needs of the network: the ``Transport`` interface.

Roles talk to a ``Transport`` and never to sockets. ``net.runtime.Node`` is the TCP (and TLS)
implementation every deployment runs on; ``net.memory`` connects the players of one deployment
inside one event loop, through the same codec and the same dial rules, so every behaviour that
involves several players can be run and tested without processes (the shape of CrypTen's
communicator interface with its in-process implementation).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from asyncmpc.config import Config
from asyncmpc.wire.messages import Message

__all__ = ["Event", "Greeting", "Opener", "Transport"]

Event = tuple[str, Message | None]
"""(player, message) from the inbox; message None means that player's connection closed."""
Greeting = Callable[[str], list[Message]]
"""Messages to send a newly connected player before anything else (given its name)."""


class Transport(Protocol):
    """One player's connections to the others, as a role sees them."""

    @property
    def name(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def peers(self) -> Mapping[str, object]:
        """The players connected now (by name), each with its connection: a player that
        connects again has another connection object."""
        ...

    @property
    def tls_refusals(self) -> Mapping[str, str]:
        """Players this one dials whose TLS failed, each with why; empty where there is no TLS."""
        ...

    @property
    def refused_callers(self) -> Mapping[str, str]:
        """Hosts whose every TLS handshake with this listener failed so far, each with why."""
        ...

    @property
    def peer_keys(self) -> Mapping[str, bytes]:
        """The public key of every player whose TLS handshake passed (DER SubjectPublicKeyInfo,
        from its certificate; the newest if it connected again); empty where there is no TLS."""
        ...

    def logger(self, name: str) -> logging.LoggerAdapter[logging.Logger]:
        """The logger ``name`` (a module's ``__name__``), its records tagged with this player."""
        ...

    def maintain(self, names: list[str] | None = None) -> None:
        """Stay connected to ``names`` (default: every player this role dials)."""
        ...

    async def send(self, to: str, msg: Message) -> None:
        """Send ``msg`` to the connected player ``to``; PeerLost if it is not connected."""
        ...

    def post(self, to: str, msg: Message, timeout: float | None) -> None:
        """Queue ``msg`` for ``to`` without waiting; a peer that takes none of its messages
        within ``timeout`` is disconnected."""
        ...

    async def recv(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError after ``timeout`` seconds."""
        ...

    def quiet(self) -> bool:
        """Whether no event waits to be received."""
        ...

    async def drop(self, player: str, error: Exception) -> None:
        """Tell ``player`` why, and close its connection."""
        ...

    async def shun(self, player: str, reason: str) -> None:
        """Exclude ``player`` for the rest of the session."""
        ...

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` holds (checked when a connection opens or closes)."""
        ...

    async def wait_for_most(self, names: list[str], need: int, timeout: float, grace: float) -> list[str]:
        """Wait for ``need`` of ``names``, then up to ``grace`` for the rest; PeerLost if fewer came."""
        ...

    async def wait_for_peers(self, names: list[str], timeout: float | None = None) -> None:
        """Wait until every player in ``names`` is connected; PeerLost after ``timeout``."""
        ...

    def expect_round(self, elements: int) -> None:
        """A round of ``elements`` is coming: frames that large may follow."""
        ...

    def traffic(self) -> tuple[int, int]:
        """Bytes (sent, received) so far."""
        ...


Opener = Callable[..., AbstractAsyncContextManager[Transport]]
"""How a role gets its transport: called as ``opener(config, name, greet=...)`` (``Node`` by
default; ``memory.Hub.open`` in process)."""
