"""The servers of a round agree on its contributors before an early release (pure).

A server that holds every expected owner's share may answer the model owner at once, with
its ``ResultShare`` under the round's one-time key (no ``Aggregate`` round trip). A release
is for one contributor set only (``protocol.releases``), so a server that released over S
could not answer an ``Aggregate`` over S without X later, when X's share reached it but not
the others (an owner that crashed half-way through its sends). So before an early release a
server tells the round's other servers which owners it holds (``InputsHeld``), and releases
early only when one of them holds exactly the same set: two servers that agree release, and
the odd one out reports ``Holding`` instead; the model owner then asks everyone for the
owners all of them hold, which the odd one can still give (it has not released) and the two
that agree give again when their set is that one.

One server alone cannot make an honest one release a set it does not hold itself: a server
only ever releases its own complete set, and only when a peer's report matches it; a peer
that lies about its set can only keep the early answer from going out (the round then takes
the ``Holding`` and ``Aggregate`` path, one round trip more).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeVar

from asyncmpc.errors import RemoteProtocolError

__all__ = ["Agreement", "Step", "hear_once"]

_T = TypeVar("_T")


def hear_once(reports: dict[int, _T], peers: frozenset[int], peer: int, value: _T, sender: str, what: str) -> bool:
    """Record that server ``peer`` (player ``sender``) says ``value`` for a round; False if it is
    not one of the round's ``peers`` (ignored). A peer says one thing per round: another
    ``what`` than before is a RemoteProtocolError."""
    if peer not in peers:
        return False
    if reports.get(peer, value) != value:
        raise RemoteProtocolError(f"{what} for the same round", peer=sender)
    reports[peer] = value
    return True


class Step(enum.Enum):
    """What a server does next with a round whose inputs are complete."""

    WAIT = "wait"
    """Not every other server has reported, and none that has agrees yet."""
    RELEASE = "release"
    """A peer holds exactly this server's set: release early over it."""
    REPORT = "report"
    """Every other server reported another set: report ``Holding`` to the model owner."""


@dataclass(slots=True)
class Agreement:
    """One round's agreement at one server: its own complete set and its peers' reports."""

    peers: frozenset[int]
    """The other servers of the round (indices)."""
    own: frozenset[str] | None = None
    """This server's complete set (None until its inputs are complete)."""
    reports: dict[int, frozenset[str]] = field(default_factory=dict)

    def hear(self, peer: int, owners: frozenset[str], sender: str) -> bool:
        """Peer ``peer`` (player ``sender``) holds ``owners``; False if it is not a server of
        the round (ignored). RemoteProtocolError if it reported another set before."""
        return hear_once(self.reports, self.peers, peer, owners, sender, "reported another set of owners")

    def step(self) -> Step:
        if self.own is None:
            return Step.WAIT
        if any(owners == self.own for owners in self.reports.values()):
            return Step.RELEASE
        if set(self.reports) >= self.peers:
            return Step.REPORT
        return Step.WAIT
