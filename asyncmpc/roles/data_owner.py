"""Layer 6: a data owner process: answers the model owner's requests with shared contributions.

It only dials out (to the model owner and the three servers), and keeps those connections:
a lost peer is dialled again with back-off (``Node.maintain``), and a server is sent this
owner's stream keys whenever it (re)connects, before any share. Losing the model owner ends an
epoch: the owner draws new stream keys at once and registers them with the servers, so a
model owner that resumes and asks again for a round number gets a mask from fresh streams.
It exits on ``Finish``, or when the model owner has been absent (or silent) for
``idle_timeout``.

Its raw data, gradients and shares never leave it in the clear: servers receive
seed-compressed replicated shares, the model owner receives nothing but, when it cannot
contribute, a ``Decline`` with the reason. (In the plaintext benchmark mode,
``aggregation = "plain"`` with synthetic data, it sends its synthetic gradient to the model
owner instead.)
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from asyncmpc.config import Config
from asyncmpc.errors import EncodingError, PeerLost
from asyncmpc.net.runtime import Node
from asyncmpc.prf import RandomBytes
from asyncmpc.protocol.aggregation import contribution_shares, key_messages
from asyncmpc.protocol.events import Send
from asyncmpc.roles.driver import send_all
from asyncmpc.rss import InputSharer
from asyncmpc.tls import TlsContexts
from asyncmpc.wire import messages as m
from asyncmpc.workload import OwnerWorkload, owner_workload

__all__ = ["MASK_TRACE_ENV", "run_data_owner"]

MASK_TRACE_ENV = "ASYNCMPC_MASK_TRACE"
"""Tests only: a file to which each data owner appends, per masked value, a digest of each
stream key and the nonce used (never the key), to check that no (key, nonce) pair repeats."""


async def run_data_owner(
    config: Config,
    name: str,
    *,
    tls: TlsContexts | None = None,
    prepare_ahead: bool = True,
    random_bytes: RandomBytes = os.urandom,
) -> dict[str, Any]:
    """Serve the model owner until it finishes the session; return this owner's statistics.

    With ``prepare_ahead`` it computes the next round's masks while it waits (two vectors of
    memory kept between rounds); a swarm of owners in one process turns that off.
    ``random_bytes`` is the source of share seeds (injected by tests).
    """
    player = config.player(name)
    work = owner_workload(config, player)
    model_owner = config.model_owner.name
    servers = [p.name for p in config.servers]
    plain = config.training.aggregation == "plain"
    contributed = 0
    sharer = InputSharer(random_bytes, keep_buffers=prepare_ahead, keyed=not plain, on_use=_mask_trace(name))

    def greet(peer: str) -> list[m.Message]:
        return [s.msg for s in key_messages(config, sharer) if s.to == peer] if not plain else []

    loop = asyncio.get_running_loop()
    idle = config.protocol.idle_timeout
    async with Node(config, name, tls=tls, greet=greet) as node:
        if not plain:  # the servers first: the model owner counts an owner present once it calls
            node.maintain(servers)
            limit = config.protocol.connect_timeout
            if not await node.wait_until(functools.partial(_all_connected, node, set(servers)), limit):
                node.log.warning("not every server is up; going on with those that are")
        node.maintain([model_owner])
        node.log.info("holding %s", work.describe())
        heard = loop.time()  # when the model owner last spoke (or we started)
        while True:
            try:
                sender, msg = await node.recv(timeout=max(0.0, heard + idle - loop.time()))
            except TimeoutError:
                state = "silent" if model_owner in node.peers else "unreachable"
                raise PeerLost(f"{name}: the model owner was {state} for {idle:g}s ([protocol] idle_timeout)") from None
            if sender != model_owner:
                if isinstance(msg, m.Reject):
                    node.log.warning("%s refused a message: %s", sender, msg.reason)
                elif msg is None:
                    node.log.info("lost %s; dialling it again", sender)
                continue
            heard = loop.time()
            if msg is None:
                node.log.warning("lost the model owner; new stream keys, dialling it again")
                if not plain:
                    sharer.rekey()
                    await send_all(node, [s for s in key_messages(config, sharer) if s.to in node.peers])
                continue
            if isinstance(msg, m.Finish):
                node.log.info("session finished after %d contributions", contributed)
                sent, received = node.traffic()
                return {"contributions": contributed, "bytes_sent": sent, "bytes_received": received}
            if not isinstance(msg, (m.StatsRequest, m.ModelUpdate)):
                continue
            round_no, training = msg.round_no, isinstance(msg, m.ModelUpdate)
            targets = set(msg.servers or servers)
            try:
                vector = _contribution(work, msg)
                del msg  # the model's frame: not kept while the shares go out (a swarm holds many)
                if plain:
                    gradient = m.PlainGradient(session=config.session, round_no=round_no, values=vector)
                    out = [Send(model_owner, gradient)]
                else:
                    out = contribution_shares(config, round_no, vector, sharer)
            except (EncodingError, ValueError) as exc:
                node.log.error("round %d: cannot contribute: %s", round_no, exc)
                decline = m.Decline(session=config.session, round_no=round_no, reason=str(exc))
                await send_all(node, [Send(model_owner, decline)])
                continue
            size = len(vector)
            del vector
            # the round's servers may be (re)connecting just now: give them a moment
            await node.wait_until(functools.partial(_all_connected, node, targets), config.protocol.server_timeout)
            wanted = [s for s in out if s.to == model_owner or (s.to in targets and s.to in node.peers)]
            await send_all(node, wanted, timeout=config.protocol.server_timeout)
            del out  # nor the shares, once sent
            contributed += 1
            if prepare_ahead and not plain and training:
                sharer.prepare((size,), round_no + 1)  # the next round's mask, while we wait for it


def _all_connected(node: Node, names: set[str]) -> bool:
    return names <= node.peers.keys()


def _contribution(work: OwnerWorkload, msg: m.StatsRequest | m.ModelUpdate) -> np.ndarray:
    if isinstance(msg, m.StatsRequest):
        return work.stats_vector()
    return work.contribution(msg.theta, msg.mean, msg.scale, msg.round_no - 1)


def _mask_trace(name: str) -> Callable[[bytes, bytes], None] | None:
    path = os.environ.get(MASK_TRACE_ENV)
    if not path:
        return None

    def record(key: bytes, nonce: bytes) -> None:
        digest = hashlib.sha256(b"asyncmpc mask trace" + key).hexdigest()[:32]
        with open(path, "a") as fh:
            fh.write(f"{name} {digest} {nonce.hex()}\n")

    return record
