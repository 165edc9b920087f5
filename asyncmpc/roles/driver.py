"""Drive one secure-aggregation round from the model owner's node."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from asyncmpc.errors import PeerLost, RemoteProtocolError
from asyncmpc.net.transport import Transport
from asyncmpc.protocol.deadlines import ContactClock, IdleClock
from asyncmpc.protocol.events import Action, Drop, Send
from asyncmpc.protocol.outcome import RoundResult
from asyncmpc.wire.messages import Message

__all__ = ["ModelOwnerWatch", "RoundMachine", "drive_round", "post_all", "send_all"]


class ModelOwnerWatch:
    """What data owners and servers wait on: the next event, as long as the model owner has
    spoken within ``idle_timeout`` (``deadlines.IdleClock``; absent or silent longer:
    PeerLost, one line), and, while no peer has connected, as long as TLS with the players this
    one dials has not failed for ``connect_timeout`` (``deadlines.ContactClock``). Callers whose
    TLS fails only earn one warning: anyone can make a handshake fail."""

    def __init__(self, node: Transport) -> None:
        self.node = node
        self.model_owner = node.config.model_owner.name
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self.clock = IdleClock(node.config.protocol.idle_timeout, now)
        self.contact = ContactClock(node.config.protocol.connect_timeout, now)
        self._told = False

    async def recv(self) -> tuple[str, Message | None]:
        while True:
            due = min(t for t in (self.clock.get_timer(), self.contact.get_timer()) if t is not None)
            try:
                sender, msg = await self.node.recv(timeout=max(0.0, due - self._loop.time()))
                break
            except TimeoutError:
                self._expired()
        self.contact.met = True  # a peer connected: whatever fails later is not this player's certificate
        if sender == self.model_owner:
            self.clock.spoke(self._loop.time())
        return sender, msg

    def _expired(self) -> None:
        """PeerLost if a deadline passed; else (the contact clock is done) wait on."""
        node, now = self.node, self._loop.time()
        limit = self.contact.limit
        due = not self.contact.met and now >= self.contact.started + limit
        if self.contact.expired(now, connected=bool(node.peers), refused=bool(node.tls_refusals)):
            first = next(iter(node.tls_refusals.values())).removeprefix(f"{node.name}: ")
            raise PeerLost(
                f"{node.name}: no player could connect within {limit:g}s ([protocol] connect_timeout): {first}"
            )
        if due and not self.contact.met and node.refused_callers and not self._told:
            self._told = True  # callers are not authenticated: say it once, and wait on
            host, reason = next(iter(node.refused_callers.items()))
            node.logger(__name__).warning(
                "no player has connected within %gs, and TLS failed with %d caller(s), first %s: %s; if they are "
                "this deployment's players, check that this player's ca.pem is the deployment CA's and its "
                "certificate is signed by it",
                limit,
                len(node.refused_callers),
                host,
                reason,
            )
        if self.clock.expired(now):
            state = "silent" if self.model_owner in node.peers else "absent"
            limit = self.clock.limit
            raise PeerLost(f"{node.name}: the model owner was {state} for {limit:g}s ([protocol] idle_timeout)")


async def send_all(node: Transport, actions: Sequence[Action], timeout: float | None = None) -> None:
    """Carry out a state machine's actions: drop the players it blames (``Drop``), then send
    every message, to different players at the same time and to each in order.

    A lost peer is logged; the round's deadlines handle the rest. A peer that does not take
    its messages within ``timeout`` seconds (it stopped reading) is disconnected.
    """
    by_peer: dict[str, list[Send]] = {}
    for action in actions:
        if isinstance(action, Drop):
            await node.drop(action.player, action.error)
        else:
            by_peer.setdefault(action.to, []).append(action)

    async def to_peer(queue: list[Send]) -> None:
        for action in queue:
            try:
                async with asyncio.timeout(timeout):
                    await node.send(action.to, action.msg)
            except PeerLost as exc:
                node.logger(__name__).warning("could not send %s: %s", action.msg.KIND, exc)
                return
            except TimeoutError:
                stuck = RemoteProtocolError(f"took no {action.msg.KIND!r} for {timeout:g}s", peer=action.to)
                await node.drop(action.to, stuck)
                return

    if len(by_peer) == 1:
        (queue,) = by_peer.values()
        await to_peer(queue)
    elif by_peer:
        await asyncio.gather(*(to_peer(q) for q in by_peer.values()))


async def post_all(node: Transport, actions: Sequence[Action], timeout: float | None) -> None:
    """Carry out a state machine's actions without waiting for any peer to read: drop the
    players it blames, queue every message (``Node.post``; a peer that takes none of its
    messages within ``timeout`` is disconnected, and holds up no one else)."""
    for action in actions:
        if isinstance(action, Drop):
            await node.drop(action.player, action.error)
        else:
            node.post(action.to, action.msg, timeout)


class RoundMachine(Protocol):
    """What ``drive_round`` needs of a round's state machine (``AggregationRound``,
    ``PlainRound``): messages and time in, actions out."""

    @property
    def players(self) -> tuple[str, ...]: ...
    @property
    def done(self) -> bool: ...
    @property
    def result(self) -> RoundResult | None: ...

    shape: tuple[int, ...]

    def open(self, now: float) -> Sequence[Action]: ...
    def feed(self, sender: str, msg: Message) -> Sequence[Action]: ...
    def lose(self, player: str, reason: str) -> Sequence[Action]: ...
    def get_timer(self, now: float) -> float | None: ...
    def handle_timer(self, now: float) -> Sequence[Action]: ...


async def drive_round(
    node: Transport,
    rnd: RoundMachine,
    on_other: Callable[[str, Message | None], Awaitable[None]] | None = None,
    requests: Sequence[Send] = (),
) -> RoundResult:
    """Open ``rnd`` (at its servers), send the owners their ``requests``, and feed the round
    every message of its players and every deadline (its own: ``get_timer`` /
    ``handle_timer``) until it yields a result. A player whose connection closes is lost to
    the round; one that breaks the protocol is disconnected and lost. Events from other
    players go to ``on_other`` (a data owner declining, or a connection closing).
    """
    loop = asyncio.get_running_loop()
    p = node.config.protocol
    node.expect_round(math.prod(rnd.shape))  # the servers' answers may be that large
    await send_all(node, rnd.open(loop.time()), timeout=p.server_timeout)
    await send_all(node, requests, timeout=p.round_timeout / 2)  # after the servers know the round
    while not rnd.done:
        at = rnd.get_timer(loop.time())
        assert at is not None
        try:
            sender, msg = await node.recv(timeout=max(0.0, at - loop.time()))
        except TimeoutError:
            await send_all(node, rnd.handle_timer(loop.time()), timeout=p.server_timeout)
            continue
        if sender not in rnd.players:
            if on_other is not None:
                await on_other(sender, msg)
            continue
        if msg is None:
            await send_all(node, rnd.lose(sender, f"{sender}'s connection closed"), timeout=p.server_timeout)
            continue
        actions: list[Action]
        try:
            actions = list(rnd.feed(sender, msg))
        except RemoteProtocolError as exc:
            actions = [Drop(sender, exc), *rnd.lose(sender, str(exc))]
        await send_all(node, actions, timeout=p.server_timeout)
    assert rnd.result is not None
    return rnd.result
