"""Drive one secure-aggregation round from the model owner's node."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

from asyncmpc.errors import PeerLost, RemoteProtocolError, RoundTimeout
from asyncmpc.net.runtime import Node
from asyncmpc.protocol.aggregation import AggregationRound, Phase, RoundResult
from asyncmpc.protocol.events import Action, Drop, Send
from asyncmpc.wire.messages import Message

__all__ = ["ModelOwnerWatch", "drive_round", "post_all", "send_all"]


class ModelOwnerWatch:
    """What data owners and servers wait on: the next event, as long as the model owner has
    spoken within ``idle_timeout`` (absent or silent longer: PeerLost, one line)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.model_owner = node.config.model_owner.name
        self.idle = node.config.protocol.idle_timeout
        self._loop = asyncio.get_running_loop()
        self._heard = self._loop.time()  # when the model owner last spoke (or we started)

    async def recv(self) -> tuple[str, Message | None]:
        try:
            sender, msg = await self.node.recv(timeout=max(0.0, self._heard + self.idle - self._loop.time()))
        except TimeoutError:
            state = "silent" if self.model_owner in self.node.peers else "absent"
            raise PeerLost(
                f"{self.node.name}: the model owner was {state} for {self.idle:g}s ([protocol] idle_timeout)"
            ) from None
        if sender == self.model_owner:
            self._heard = self._loop.time()
        return sender, msg


async def send_all(node: Node, actions: Sequence[Action], timeout: float | None = None) -> None:
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
                node.log.warning("could not send %s: %s", action.msg.KIND, exc)
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


async def post_all(node: Node, actions: Sequence[Action], timeout: float | None) -> None:
    """Carry out a state machine's actions without waiting for any peer to read: drop the
    players it blames, queue every message (``Node.post``; a peer that takes none of its
    messages within ``timeout`` is disconnected, and holds up no one else)."""
    for action in actions:
        if isinstance(action, Drop):
            await node.drop(action.player, action.error)
        else:
            node.post(action.to, action.msg, timeout)


async def drive_round(
    node: Node,
    rnd: AggregationRound,
    timeout: float,
    on_other: Callable[[str, Message | None], Awaitable[None]] | None = None,
    requests: list[Send] | None = None,
    server_timeout: float | None = None,
    on_silent: Callable[[str], Awaitable[None]] | None = None,
) -> RoundResult:
    """Open ``rnd`` at its servers and feed it their answers until it yields a result.

    The deadline is split in two phases (inputs, then results); ``expire`` is called at each.
    Once two servers have answered a phase, a third that stays silent for ``server_timeout``
    seconds is first told to close its inputs (it may be waiting for a share that an owner
    withheld from it: that makes it late, not silent), and only if it stays silent another
    ``server_timeout`` is it left out of the round (``on_silent`` hears of it); a server whose
    connection closes is left out at once. ``requests`` go out right after the round is opened at the
    servers. Events from players other than the servers go to ``on_other`` (a data owner
    declining, or a connection closing).
    A result whose cross-check fails yields nothing; its ``suspects`` name the servers of
    which one lied. Raises RoundTimeout if the round never finished.
    """
    node.expect_round(math.prod(rnd.shape))  # the servers' answers may be that large
    await send_all(node, rnd.open(), timeout=server_timeout)
    await send_all(node, requests or [], timeout=timeout / 2)  # after the servers know the round
    loop = asyncio.get_running_loop()
    phase_end = loop.time() + timeout / 2
    expiries = 0
    silence = _Silence(server_timeout)
    while not rnd.done:
        now = loop.time()
        silent_at = silence.deadline(rnd, now)
        if silent_at is not None and now >= silent_at:
            await _leave_out_silent(node, rnd, silence, on_silent)
            continue
        deadline = phase_end if silent_at is None else min(phase_end, silent_at)
        try:
            sender, msg = await node.recv(timeout=max(0.0, deadline - now))
        except TimeoutError:
            if loop.time() < phase_end:
                continue  # the silent-server deadline: handled at the top of the loop
            expiries += 1
            if expiries > 3:
                raise RoundTimeout(f"round {rnd.round_no} did not finish within {timeout:g}s") from None
            await send_all(node, rnd.expire(), timeout=server_timeout)
            phase_end = loop.time() + timeout / 2
            continue
        if sender not in rnd.servers:
            if on_other is not None:
                await on_other(sender, msg)
            continue
        if msg is None:
            await send_all(node, rnd.lose(sender, f"{sender}'s connection closed"), timeout=server_timeout)
            continue
        try:
            actions = rnd.feed(sender, msg)
        except RemoteProtocolError as exc:
            await node.drop(sender, exc)  # the round goes on with the other servers
            continue
        await send_all(node, actions, timeout=server_timeout)
    assert rnd.result is not None
    return rnd.result


class _Silence:
    """Once two servers have answered a phase of a round, the third has ``limit`` seconds (and
    as many again after it was told to close its inputs)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = limit
        self._since: tuple[int, Phase, float] | None = None  # (ask, phase, when it began)

    def deadline(self, rnd: AggregationRound, now: float) -> float | None:
        """When the servers still awaited count as silent; None while there is no such deadline."""
        if self.limit is None or rnd.answered < 2 or not rnd.waiting_on:
            return None
        if self._since is None or self._since[:2] != (rnd.asks, rnd.phase):
            self._since = (rnd.asks, rnd.phase, now)
        return self._since[2] + self.limit


async def _leave_out_silent(
    node: Node, rnd: AggregationRound, silence: _Silence, on_silent: Callable[[str], Awaitable[None]] | None
) -> None:
    if rnd.may_close_inputs:  # waiting for inputs: ask for its Holding before calling it silent
        await send_all(node, rnd.expire(), timeout=silence.limit)
        return
    actions: list[Send] = []
    for silent in rnd.waiting_on:
        actions += rnd.lose(silent, f"{silent} was silent for {silence.limit:g}s")
        if on_silent is not None:
            await on_silent(silent)
    await send_all(node, actions, timeout=silence.limit)
