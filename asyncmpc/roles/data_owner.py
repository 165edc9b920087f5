"""Layer 6: a data owner process: answers the model owner's requests with shared contributions.

It only dials out (to the model owner and the three servers). Its raw data, gradients and
shares never leave it in the clear: servers receive seed-compressed replicated shares, the
model owner receives nothing but, when it cannot contribute, a ``Decline`` with the reason.
"""

from __future__ import annotations

import numpy as np

from asyncmpc.config import Config
from asyncmpc.data import owner_data
from asyncmpc.errors import EncodingError, PeerLost
from asyncmpc.net.runtime import Node, TlsContexts
from asyncmpc.protocol.aggregation import input_shares
from asyncmpc.protocol.events import Send
from asyncmpc.roles.driver import send_all
from asyncmpc.training import OwnerWork, encode_contribution
from asyncmpc.wire import messages as m

__all__ = ["run_data_owner"]


async def run_data_owner(config: Config, name: str, *, tls: TlsContexts | None = None) -> int:
    """Serve the model owner until it finishes the session; return the rounds contributed to."""
    player = config.player(name)
    data, classes = owner_data(config, player)
    assert player.index is not None
    work = OwnerWork(config, player.index, data, classes)
    model_owner = config.model_owner.name
    contributed = 0
    async with Node(config, name, tls=tls) as node:
        await node.connect()
        node.log.info("holding %d examples with %d features", len(data.y), data.x.shape[1])
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
                return contributed
            if not isinstance(msg, (m.StatsRequest, m.ModelUpdate)):
                continue
            try:
                vector = _contribution(work, msg)
                ring = encode_contribution(config, vector)
            except (EncodingError, ValueError) as exc:
                node.log.error("round %d: cannot contribute: %s", msg.round_no, exc)
                decline = m.Decline(session=config.session, round_no=msg.round_no, reason=str(exc))
                await send_all(node, [Send(model_owner, decline)])
                continue
            await send_all(node, input_shares(config, msg.round_no, ring))
            contributed += 1


def _contribution(work: OwnerWork, msg: m.StatsRequest | m.ModelUpdate) -> np.ndarray:
    if isinstance(msg, m.StatsRequest):
        return work.stats_vector()
    n = work.model.n_features
    if msg.mean.shape != (n,) or msg.scale.shape != (n,):
        raise ValueError(f"model update has scaling for {msg.mean.shape} features, this owner has {n}")
    if msg.theta.shape != (work.model.size,):
        raise ValueError(f"model update has {msg.theta.shape[0]} parameters, expected {work.model.size}")
    return work.contribution(msg.theta, msg.mean, msg.scale, msg.round_no - 1)
