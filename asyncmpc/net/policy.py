"""Who may connect to whom, and how large a frame each peer may send (pure).

Who dials whom follows DESIGN.md: data owners only dial out (to the model owner and the three
servers); the model owner dials the servers; between servers the higher index dials the lower.

Frame caps bound what one peer can make a player buffer, by the sender's role and the largest
round the receiver knows of (``largest``: elements of the largest vector a round of this
session has had, as the receiving role reports it). A data owner's share carries at most two
vectors, a server's result share two and its noise part one; everything else a round sends
(openings, owner lists, refusals) is small. A frame announced above its sender's cap waits,
with its connection's reading paused, for a round that large to open (a share may come before
its round does), and fails if none does within the frame deadline. A data owner takes the
model owner's frames up to ``max_frame_bytes``: the model's size is the model owner's to choose.
"""

from __future__ import annotations

from asyncmpc.config import LISTENING_ROLES, Config, Player, Role
from asyncmpc.crypto.normproof import NormSpec

__all__ = ["HANDSHAKE_FRAME", "dial_targets", "frame_cap", "may_dial"]

HANDSHAKE_FRAME = 1 << 16
"""The largest frame before a connection's ``Hello`` names its player."""
_NAME_BYTES = 64
"""Room per player of the deployment in a small message (lists of owners)."""
_VECTORS = {
    (Role.COMPUTE_SERVER, Role.DATA_OWNER): 2,  # InputShare: two components
    (Role.COMPUTE_SERVER, Role.COMPUTE_SERVER): 1,  # NoiseShare: a masked vector
    (Role.MODEL_OWNER, Role.COMPUTE_SERVER): 2,  # ResultShare: two components in full
    (Role.MODEL_OWNER, Role.DATA_OWNER): 1,  # PlainGradient (the plaintext benchmark mode)
}
"""(receiver role, sender role) -> the most vectors of a round's size one frame carries."""


def may_dial(config: Config, dialer: Player, listener: Player) -> bool:
    """Whether ``dialer`` is the one to open connections to ``listener``."""
    if listener.role not in LISTENING_ROLES or dialer.name == listener.name:
        return False
    if dialer.role == Role.DATA_OWNER:
        return True
    if dialer.role == Role.MODEL_OWNER:
        return listener.role == Role.COMPUTE_SERVER
    if dialer.role == Role.COMPUTE_SERVER and listener.role == Role.COMPUTE_SERVER:
        return (dialer.index or 0) > (listener.index or 0)
    return False


def dial_targets(config: Config, me: Player) -> list[Player]:
    """The players that ``me`` dials at start-up."""
    return [p for p in config.players.values() if may_dial(config, me, p)]


def frame_cap(config: Config, receiver: str, sender: str, largest: int) -> int:
    """The largest frame player ``receiver`` takes from player ``sender`` now, given the
    largest round (in elements) ``receiver`` knows of."""
    limit = config.protocol.max_frame_bytes
    to, by = config.player(receiver).role, config.player(sender).role
    if to == Role.DATA_OWNER and by == Role.MODEL_OWNER:
        return limit
    small = HANDSHAKE_FRAME + _NAME_BYTES * len(config.players)
    extra = 0
    if config.protocol.norm_bound and largest and (to, by) in _NORM_PARTS:
        spec = NormSpec(config.protocol.encoded_norm_bound, largest)
        if by == Role.DATA_OWNER:
            extra = 8 * 2 * spec.payload_size
        elif to == Role.MODEL_OWNER:  # NormEvidence: a component (a vector) with its norm part
            extra = 8 * (spec.payload_size + 2 * spec.opened_size)
        else:
            extra = 8 * 2 * spec.opened_size
    return min(limit, small + 8 * largest * _VECTORS.get((to, by), 0) + extra)


_NORM_PARTS = {
    (Role.COMPUTE_SERVER, Role.DATA_OWNER),
    (Role.COMPUTE_SERVER, Role.COMPUTE_SERVER),
    (Role.MODEL_OWNER, Role.COMPUTE_SERVER),
}
"""Frames that carry norm parts (``InputShare``, ``NormOpened``, ``NormEvidence``)."""
