"""Layer 6: a data owner process: answers the model owner's requests with shared contributions.

It only dials out (to the model owner and the three servers). Its raw data, gradients and
shares never leave it in the clear: servers receive seed-compressed replicated shares, the
model owner receives nothing but, when it cannot contribute, a ``Decline`` with the reason.
(In the plaintext benchmark mode, ``aggregation = "plain"`` with synthetic data, it sends its
synthetic gradient to the model owner instead.)
"""

from __future__ import annotations

import os
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

__all__ = ["run_data_owner"]


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
    plain = config.training.aggregation == "plain"
    contributed = 0
    sharer = InputSharer(random_bytes, keep_buffers=prepare_ahead, keyed=not plain)
    async with Node(config, name, tls=tls) as node:
        await node.connect([model_owner] if plain else None)
        if not plain:
            await send_all(node, key_messages(config, sharer))  # before any share, on the same connections
        node.log.info("holding %s", work.describe())
        while True:
            sender, msg = await node.recv()
            if sender != model_owner:
                if isinstance(msg, m.Reject):
                    node.log.warning("%s refused a message: %s", sender, msg.reason)
                continue
            if msg is None:
                raise PeerLost(f"{name}: lost the connection to the model owner")
            if isinstance(msg, m.Finish):
                node.log.info("session finished after %d contributions", contributed)
                sent, received = node.traffic()
                return {"contributions": contributed, "bytes_sent": sent, "bytes_received": received}
            if not isinstance(msg, (m.StatsRequest, m.ModelUpdate)):
                continue
            round_no, training = msg.round_no, isinstance(msg, m.ModelUpdate)
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
            await send_all(node, out)
            del out  # nor the shares, once sent
            contributed += 1
            if prepare_ahead and not plain and training:
                sharer.prepare((size,), round_no + 1)  # the next round's mask, while we wait for it


def _contribution(work: OwnerWorkload, msg: m.StatsRequest | m.ModelUpdate) -> np.ndarray:
    if isinstance(msg, m.StatsRequest):
        return work.stats_vector()
    return work.contribution(msg.theta, msg.mean, msg.scale, msg.round_no - 1)
