"""What a compute server makes of a received input share (pure): the servers the owner was
told the round has, and its two ring components as streams or vectors, checked."""

from __future__ import annotations

from asyncmpc.crypto.prf import round_nonce
from asyncmpc.crypto.rss import Keyed, Seed
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.authenticated import RingPart
from asyncmpc.protocol.keyed import KeyedOwners
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.sums import ZERO_NONCE
from asyncmpc.wire import messages as m

__all__ = ["ring_parts", "told_servers"]


def told_servers(params: Params, sender: str, msg: m.InputShare) -> frozenset[int]:
    """The servers (indices) the owner was told the round has (all three when it names none)."""
    named = msg.servers or params.servers
    indices = {params.index(s) for s in named}
    if None in indices or len(indices) != len(named):
        raise RemoteProtocolError(f"round {msg.round_no}: names servers {list(named)}", peer=sender)
    return frozenset(i for i in indices if i is not None)


def ring_parts(
    keyed: KeyedOwners, sender: str, msg: m.InputShare, round_no: int, shape: tuple[int, ...]
) -> tuple[RingPart, RingPart]:
    """The share's two ring components as streams (key, nonce) or vectors, checked."""
    if tuple(msg.shape) != shape:
        raise RemoteProtocolError(
            f"input share of shape {tuple(msg.shape)} for round {round_no}, expected {shape}", peer=sender
        )
    parts: list[RingPart] = []
    for i, comp in enumerate((msg.a, msg.b)):
        if isinstance(comp, Seed):
            parts.append((comp.key, ZERO_NONCE))
        elif isinstance(comp, Keyed):
            key = keyed.key(sender, i)
            if not key:
                raise RemoteProtocolError(
                    f"round {round_no}: component {'ab'[i]} is keyed, but no key was registered for it",
                    peer=sender,
                )
            parts.append((key, round_nonce(round_no)))
        elif comp.shape != shape:
            raise RemoteProtocolError(
                f"round {round_no}: component of shape {comp.shape}, expected {shape}", peer=sender
            )
        else:
            parts.append(comp)
    return parts[0], parts[1]
