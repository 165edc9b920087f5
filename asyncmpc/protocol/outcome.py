"""What a round came to (pure): ``RoundResult``, and its ``Kind``, which callers
branch on instead of reading text."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from asyncmpc.crypto.ring import RingArray
from asyncmpc.wire.messages import Refusal

__all__ = ["Kind", "RoundResult"]


class Kind(enum.Enum):
    """What a round came to (``RoundResult.kind``): callers branch on this, never on text."""

    SUMMED = "summed"
    """A sum, cross-checked by three servers or verified by a MAC."""
    UNCHECKED = "unchecked"
    """A sum from two servers in full, unchecked (only under [privacy]: no MAC rounds there)."""
    CAUGHT = "caught"
    """A MAC-verified sum, and a server proved to have lied (``cheater``)."""
    DISPUTED = "disputed"
    """No sum: one of ``suspects`` lied (or an owner sent different shares); run it again as a
    MAC round."""
    RECHECK = "recheck"
    """No sum: a server was lost, and two servers' sums are checked only in a MAC round."""
    REFUSED = "refused"
    """No sum: a server kept a release rule or its budget (``refusal``); no one is suspected."""
    FAILED = "failed"
    """No sum: too few contributors or servers, or nothing verified; no one is suspected."""


@dataclass(frozen=True, slots=True)
class RoundResult:
    round_no: int
    total: RingArray | None
    """Sum over ``contributors`` in the ring; None when the round yielded nothing."""
    contributors: tuple[str, ...]
    cross_checked: bool
    """True when all three servers answered and their twice-held components agreed."""
    reason: str = ""
    servers: tuple[str, ...] = ()
    """The servers whose result shares make up ``total``."""
    suspects: tuple[str, ...] = ()
    """An ordinary round's cross-check failed: one of these servers lied (or an owner sent
    inconsistent shares); the model owner runs the round again as a MAC round."""
    mac: bool = False
    """A MAC round (``protocol.authenticated``)."""
    cheater: str = ""
    """A MAC round proved that this server lied; ``total`` is the sum without its lie."""
    inconsistent: tuple[str, ...] = ()
    """Owners whose two holders of a component reported different digests in a MAC round (the
    owner or one holder lied): kept in the sum, which the MAC verified."""
    refusal: Refusal | None = None
    """The server's refusal code that ended the round without a sum (none blamed for it)."""
    culprit: str = ""
    """A data owner proved to misbehave: three servers answered in full, every component they
    disagree on is one where this owner's holders got different shares, and no reconstruction
    verifies (leaving out a lying server's versions would have verified). It is left out of
    the rounds that follow."""
    norm_failed: tuple[str, ...] = ()
    """Owners whose input two servers found over ``[protocol] norm_bound``: left out of the sum."""
    recheck: bool = False
    """An ordinary round lost a server: the two left answered in full, which nothing checks, so
    the round yields nothing and is to run again as a MAC round on them (not under
    [privacy], where MAC rounds are refused and such a sum is accepted unchecked)."""

    @property
    def kind(self) -> Kind:
        if self.total is not None:
            if self.cheater:
                return Kind.CAUGHT
            return Kind.SUMMED if self.cross_checked or self.mac else Kind.UNCHECKED
        if self.suspects:
            return Kind.DISPUTED
        if self.recheck:
            return Kind.RECHECK
        return Kind.REFUSED if self.refusal is not None else Kind.FAILED
