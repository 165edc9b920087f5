"""Layer 6: a compute server process: a ``ServerProtocol`` fed from a ``Node``.

It serves until the model owner sends ``Finish`` (or the process is cancelled). A peer that
breaks the protocol is told why and disconnected; the server keeps serving everyone else.
"""

from __future__ import annotations

import logging
from typing import Any

from asyncmpc.config import Config
from asyncmpc.errors import PeerLost, RemoteProtocolError
from asyncmpc.net.runtime import Node
from asyncmpc.prf import new_seed
from asyncmpc.protocol.server import ServerProtocol
from asyncmpc.tls import TlsContexts
from asyncmpc.wire.messages import Finish

__all__ = ["run_compute_server"]

log = logging.getLogger(__name__)


async def run_compute_server(config: Config, name: str, *, tls: TlsContexts | None = None) -> dict[str, Any]:
    """Serve until the model owner finishes the session; return this server's traffic."""
    proto = ServerProtocol(config, name, own_prf_key=new_seed())
    async with Node(config, name, tls=tls) as node:
        others = [p.name for p in config.servers if p.name != name]
        await node.connect()
        await node.wait_for_peers(others)
        for action in proto.start():
            await node.send(action.to, action.msg)
        while True:
            sender, msg = await node.recv()
            if msg is None:
                proto.forget(sender)
                continue
            if isinstance(msg, Finish) and sender == config.model_owner.name:
                node.log.info("model owner finished the session: %s", msg.reason)
                sent, received = node.traffic()
                return {"bytes_sent": sent, "bytes_received": received}
            try:
                actions = proto.feed(sender, msg)
            except RemoteProtocolError as exc:
                await node.drop(sender, exc)
                continue
            for action in actions:
                try:
                    await node.send(action.to, action.msg)
                except PeerLost as exc:
                    node.log.warning("could not send %s: %s", action.msg.KIND, exc)
            if node.inbox.empty():
                proto.idle()
