"""Under [privacy], the servers of a round agree on what it releases before any of them does
(pure).

Each component of a share is held by two servers, and both add the same noise to it. If two
honest servers released one round over different contributor sets, the difference of their
answers would be an owner's component without noise; a model owner with one colluding server
(which holds the other two components) would read that owner's input exactly. Release rule 2
(one set per round) is kept by each server alone, so it cannot stop this; nor can agreeing with
one peer, which may be the colluder.

So under [privacy] a server *commits* to one (servers, contributors) for a round the first
time it would release, tells every other server of the round (``ReleaseSet``), and releases
only once each of them has committed to the same. It never commits to another: asked for
another set, it refuses. Two honest servers of a round therefore release over the same set or
not at all, whatever the model owner and a colluding server tell each. The servers named are
part of it: every honest server then counts the same dealers, so none deals less noise than
the others assume. (A server that was told a two-server round that leaves out an honest one is
kept from releasing an owner's shares by the owner, whose shares name the servers it was told:
``InputShare.servers``.)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from asyncmpc.protocol.agreement import hear_once
from asyncmpc.protocol.events import Send
from asyncmpc.wire import messages as m

__all__ = ["Commitment", "Release", "Verdict", "release_set"]

Release = tuple[tuple[str, ...], tuple[str, ...], int]
"""(the round's servers, its contributors, both in a fixed order; its DP-FTRL position, or 0)."""


class Verdict(enum.Enum):
    WAIT = "wait"
    """Not every other server of the round has committed yet."""
    AGREED = "agreed"
    """Every other server committed to this server's release."""
    DIFFER = "differ"
    """Another server committed to another release: this round releases nothing here."""


@dataclass(slots=True)
class Commitment:
    """One round's commitment at one server, and its peers'."""

    peers: frozenset[int]
    """The other servers of the round (indices)."""
    own: Release | None = None
    heard: dict[int, Release] = field(default_factory=dict)

    def pledge(
        self, release: Release, session: str, round_no: int, names: tuple[str, ...]
    ) -> tuple[list[Send], Verdict]:
        """Commit to ``release`` and tell the round's other servers (``names``: every server by
        index) the first time; whether they all committed to the same."""
        first = self.own is None
        if not self.commit(release):
            return [], Verdict.DIFFER
        told = release_set(session, round_no, release)
        return ([Send(names[i], told) for i in sorted(self.peers)] if first else []), self.verdict()

    def commit(self, release: Release) -> bool:
        """Commit to ``release`` (True), or say it is another than the one committed to."""
        if self.own is None:
            self.own = release
        return self.own == release

    def hear(self, peer: int, release: Release, sender: str) -> bool:
        """Peer ``peer`` (player ``sender``) committed to ``release``; False if it is not a
        server of the round. RemoteProtocolError if it committed to another before."""
        return hear_once(self.heard, self.peers, peer, release, sender, "committed to another release")

    def verdict(self) -> Verdict:
        if self.own is None:
            return Verdict.WAIT
        if any(release != self.own for release in self.heard.values()):
            return Verdict.DIFFER
        return Verdict.AGREED if set(self.heard) >= self.peers else Verdict.WAIT


def release_set(session: str, round_no: int, release: Release) -> m.ReleaseSet:
    servers, contributors, position = release
    return m.ReleaseSet(
        session=session, round_no=round_no, servers=servers, contributors=contributors, position=position
    )
