"""Every player of one deployment in one event loop: the in-process ``Transport``.

``Hub(config).open`` is an ``Opener``: a role given it instead of ``Node`` runs unchanged, its
messages passed to the other players' inboxes through the wire codec (encoded and decoded as on
a socket, so a message that would not survive the wire does not survive here) and checked as
``Node`` checks them (the sender's role may send that kind, the session matches). Who connects
to whom follows the dial rules of ``net.policy``; a connection a dialler keeps is made again
after it closes, as ``Node.maintain`` does. What sockets add (TLS, frame caps, partial frames,
kill -9) is ``Node``'s and is tested with processes.

A test may put itself between the players: ``tamper(sender, to, msg)`` sees every message and
returns it, another one in its place, or None (lost in flight); ``cut(a, b)`` closes a
connection as a network failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from asyncmpc.config import Config
from asyncmpc.errors import PeerLost, RemoteProtocolError
from asyncmpc.net.policy import dial_targets
from asyncmpc.net.transport import Event, Greeting
from asyncmpc.protocol.events import check_sender
from asyncmpc.wire.codec import decode_message, encode_message
from asyncmpc.wire.framing import frame_prefix
from asyncmpc.wire.messages import Message, Reject

__all__ = ["Hub", "MemoryNode", "Tamper"]

Tamper = Callable[[str, str, Message], Message | None]
"""(sender, receiver, message) -> the message delivered, or None to lose it."""


class Hub:
    """The in-process network of one deployment."""

    def __init__(self, config: Config, tamper: Tamper | None = None) -> None:
        self.config = config
        self.tamper = tamper
        self.nodes: dict[str, MemoryNode] = {}

    @contextlib.asynccontextmanager
    async def open(self, config: Config, name: str, *, greet: Greeting | None = None) -> AsyncIterator[MemoryNode]:
        """A player's transport, for as long as the context lasts (an ``Opener``)."""
        if name in self.nodes:
            raise ValueError(f"{name} is already on this hub")
        node = MemoryNode(self, config, name, greet)
        self.nodes[name] = node
        self.link()
        try:
            yield node
        finally:
            del self.nodes[name]
            for peer in list(node.peers):
                self.cut(name, peer)

    def link(self) -> None:
        """Connect every pair that a dialler keeps and that is not connected."""
        for node in list(self.nodes.values()):
            for target in node.wanted:
                other = self.nodes.get(target)
                if other is None or target in node.peers or target in node.shunned or node.name in other.shunned:
                    continue
                node.peers[target] = other.peers[node.name] = _Link()
                for a, b in ((node, other), (other, node)):
                    a.log.info("connected to %s", b.name)
                    for msg in a.greet(b.name) if a.greet is not None else ():
                        self.deliver(a.name, b.name, msg)
                node.changed()
                other.changed()

    def cut(self, a: str, b: str) -> None:
        """Close the connection between ``a`` and ``b``: each hears that the other is gone;
        a dialler that keeps it connects again once the loop runs."""
        for x, y in ((a, b), (b, a)):
            node = self.nodes.get(x)
            if node is not None and y in node.peers:
                del node.peers[y]
                node.inbox.put_nowait((y, None))
                node.changed()
        asyncio.get_running_loop().call_soon(self.link)

    def deliver(self, sender: str, to: str, msg: Message) -> None:
        """Pass ``msg`` through the codec into ``to``'s inbox (a wrong one gets ``sender`` dropped)."""
        if self.tamper is not None:
            changed = self.tamper(sender, to, msg)
            if changed is None:
                return
            msg = changed
        src, dst = self.nodes[sender], self.nodes[to]
        body = encode_message(msg)
        size = len(frame_prefix(len(body))) + len(body)
        src.sent += size
        dst.received += size
        received = decode_message(memoryview(bytearray(body)))  # writable, as a large frame is
        try:
            check_sender(sender, self.config.player(sender).role, received, self.config.session)
        except RemoteProtocolError as exc:
            asyncio.get_running_loop().create_task(dst.drop(sender, exc))
            return
        dst.inbox.put_nowait((sender, received))


class MemoryNode:
    """One player's end of a ``Hub`` (a ``Transport``)."""

    def __init__(self, hub: Hub, config: Config, name: str, greet: Greeting | None) -> None:
        self.hub = hub
        self.config = config
        self.name = name
        self.greet = greet
        self.peers: dict[str, _Link] = {}
        self.tls_refusals: dict[str, str] = {}
        self.refused_callers: dict[str, str] = {}
        self.peer_keys: dict[str, bytes] = {}
        self.wanted: list[str] = []
        self.shunned: set[str] = set()
        self.inbox: asyncio.Queue[Event] = asyncio.Queue()
        self.sent = self.received = 0
        self._changed = asyncio.Condition()
        self.log = self.logger("asyncmpc.net.memory")

    def logger(self, name: str) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(logging.getLogger(name), {"player": self.name})

    def changed(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def maintain(self, names: list[str] | None = None) -> None:
        me = self.config.player(self.name)
        targets = names if names is not None else [p.name for p in dial_targets(self.config, me)]
        self.wanted += [t for t in targets if t not in self.wanted]
        self.hub.link()

    async def send(self, to: str, msg: Message) -> None:
        if to not in self.peers:
            raise PeerLost(f"{self.name}: not connected to {to}")
        self.hub.deliver(self.name, to, msg)

    def post(self, to: str, msg: Message, timeout: float | None) -> None:
        if to not in self.peers:
            self.log.warning("could not send %s: not connected to %s", msg.KIND, to)
            return
        self.hub.deliver(self.name, to, msg)

    async def recv(self, timeout: float | None = None) -> Event:
        async with asyncio.timeout(timeout):
            return await self.inbox.get()

    def quiet(self) -> bool:
        return self.inbox.empty()

    async def drop(self, player: str, error: Exception) -> None:
        self.log.warning("closing connection to %s: %s", player, error)
        if player in self.peers:
            self.hub.deliver(self.name, player, Reject(session=self.config.session, reason=str(error)))
            self.hub.cut(self.name, player)

    async def shun(self, player: str, reason: str) -> None:
        self.shunned.add(player)
        await self.drop(player, RemoteProtocolError(f"excluded from this session: {reason}", peer=player))
        self.changed()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def wait_for_most(self, names: list[str], need: int, timeout: float, grace: float) -> list[str]:
        if not await self.wait_until(lambda: sum(n in self.peers for n in names) >= need, timeout):
            missing = ", ".join(n for n in names if n not in self.peers)
            raise PeerLost(f"{self.name}: {missing} did not connect within {timeout:g}s (needed {need})")
        await self.wait_until(lambda: all(n in self.peers for n in names), grace)
        return [n for n in names if n in self.peers]

    async def wait_for_peers(self, names: list[str], timeout: float | None = None) -> None:
        limit = self.config.protocol.connect_timeout if timeout is None else timeout
        await self.wait_for_most(names, len(names), limit, 0.0)

    def expect_round(self, elements: int) -> None:
        pass  # frame caps are the socket transport's

    def traffic(self) -> tuple[int, int]:
        return self.sent, self.received


class _Link:
    """One connection between two nodes: a new one is another object (``Transport.peers``)."""
