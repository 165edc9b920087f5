"""A compute server process: a ``ServerProtocol`` fed from a ``Node``.

It serves until the model owner sends ``Finish``, or until the model owner has been absent or
silent for ``idle_timeout`` (then it exits with a clear message). It needs no other player to
start: it dials the servers below it and keeps dialling them (``Node.maintain``), and greets a
server that connects with what it is owed for the rounds still open (``ServerProtocol.greet``).
Losing the model owner ends an epoch: the server forgets every round (``ServerProtocol.forget``).
A peer that breaks the protocol is told why and disconnected; the server keeps serving everyone
else.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from asyncmpc.config import Config
from asyncmpc.errors import PeerLost, RemoteProtocolError
from asyncmpc.net.runtime import Node
from asyncmpc.net.tls import TlsContexts, certificate_signer
from asyncmpc.net.transport import Opener
from asyncmpc.protocol.events import Action
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.positions import Positions
from asyncmpc.protocol.server import ServerProtocol
from asyncmpc.roles.driver import ModelOwnerWatch, post_all
from asyncmpc.wire.messages import Exclude, Finish, InputShare, Message

if TYPE_CHECKING:
    from asyncmpc.learning.privacy.noise import NoiseSource

__all__ = ["run_compute_server"]


async def run_compute_server(
    config: Config, name: str, *, tls: TlsContexts | None = None, opener: Opener | None = None
) -> dict[str, Any]:
    """Serve until the model owner finishes the session; return this server's traffic. The
    server's connections come from ``opener`` (default: a TCP ``Node``)."""
    noise = None
    tree = None
    if config.privacy is not None:
        from asyncmpc.learning.privacy.noise import NoiseSource, TreeNoise

        noise = NoiseSource(config)
        if config.privacy.mechanism == "tree":
            steps = config.privacy.epoch_steps
            tree = (TreeNoise(config, steps).draw, Positions(steps, functools.partial(_trees, noise)))
    # the release limit follows from the contribution's size, which the first round gives
    limit = None if noise is None or tree is not None else noise.release_limit
    proto = ServerProtocol(Params.of(config), name, noise=noise, release_limit=limit, tree=tree)
    try:
        return await _serve(config, name, proto, opener or functools.partial(Node, tls=tls), noise)
    finally:
        if noise is not None:
            noise.close()  # a draw ahead for a round that will not come


async def _feed(proto: ServerProtocol, sender: str, msg: Message) -> list[Action]:
    """``proto.feed``; a norm-checked share in a worker thread: its check takes seconds at 10^6
    elements, and meanwhile the node goes on reading every connection (owners sending their
    shares are not left waiting past ``server_timeout``). Nothing else feeds the protocol
    until it returns (``greet`` only reads what a share's check does not change)."""
    if isinstance(msg, InputShare) and msg.norm_digests:
        return await asyncio.to_thread(proto.feed, sender, msg)
    return proto.feed(sender, msg)


def _trees(noise: NoiseSource, size: int) -> int | None:
    """How many DP-FTRL trees of contributions of ``size`` elements the budget allows."""
    from asyncmpc.learning.privacy.accountant import TreeRounds

    p = noise.plan(size).settings
    accountant = noise.plan(size).accountant()
    if not p.epsilon or not isinstance(accountant, TreeRounds):
        return None
    return accountant.tree.epochs_within(p.epsilon, 1 << 30)


async def _serve(
    config: Config,
    name: str,
    proto: ServerProtocol,
    opener: Opener,
    noise: NoiseSource | None,
) -> dict[str, Any]:
    model_owner = config.model_owner.name
    async with opener(config, name, greet=proto.greet) as node:
        proto.keys = node.peer_keys
        proto.signer = certificate_signer(config, name)  # its TLS files were checked as the node opened
        p = config.privacy
        if noise is not None and p is not None:
            budget = f"epsilon {p.epsilon:g} at delta {p.delta:g}" if p.epsilon else "no budget"
            node.logger(__name__).info(
                "[privacy]: %s; noise multiplier and release limit from the first round's size", budget
            )
        node.maintain()
        watch = ModelOwnerWatch(node)
        while True:
            sender, msg = await watch.recv()
            if msg is None:
                if sender == model_owner:
                    node.logger(__name__).warning("lost the model owner; rounds forgotten, waiting for it to return")
                proto.forget(sender)
                continue
            if isinstance(msg, Finish) and sender == model_owner:
                node.logger(__name__).info("model owner finished the session: %s", msg.reason)
                sent, received = node.traffic()
                return {"bytes_sent": sent, "bytes_received": received}
            if isinstance(msg, Exclude) and sender == model_owner:
                if msg.server == name:
                    raise PeerLost(f"{name}: the model owner excluded this server from the session: {msg.reason}")
                node.logger(__name__).error("the model owner excluded %s: %s", msg.server, msg.reason)
                await node.shun(msg.server, msg.reason)
                continue
            try:
                actions = await _feed(proto, sender, msg)
            except RemoteProtocolError as exc:
                await node.drop(sender, exc)
                continue
            node.expect_round(proto.largest)  # shares and noise of an open round may be that large
            await post_all(node, actions, config.protocol.round_timeout)  # a slow peer holds up no one
            if node.quiet():
                proto.idle()
