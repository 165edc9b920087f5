"""The deadlines of one round on the model owner's side (pure: times are the caller's clock).

A round has ``round_timeout`` seconds from when it opened: the first half for inputs (then the
servers that have not reported are told ``CloseInputs``), the second for results. When that
passes, the servers still awaited are left out and the round goes on with the others if two
remain, asking them in full; that last ask has half a ``round_timeout`` more, and a round with
no result by then yields nothing (so a round takes at most 1.5 ``round_timeout``). Once two
servers have answered a phase, the third has ``server_timeout`` seconds: while inputs are open
it is first told ``CloseInputs`` (an owner may have withheld a share from it: that makes it
late, not silent) and given as long again; after that it is left out and disconnected.

The players other than the model owner have two deadlines of their own: ``IdleClock``, the
model owner must speak within ``idle_timeout`` (a session it abandoned ends); and
``ContactClock``, a player that has met no peer and, ``connect_timeout`` seconds after it
started (or any ``connect_timeout`` later), has seen TLS handshakes fail gives up (its own CA
or certificate is the likely fault, and waiting will not mend it).

``RoundClock`` only keeps time; ``AggregationRound.get_timer`` / ``handle_timer`` ask it what is
due and act on it, so the asyncio driver is a generic loop (the shape of aioquic's
``QuicConnection.get_timer`` / ``handle_timer``) and every deadline is tested with a fake clock.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["ContactClock", "Due", "IdleClock", "RoundClock"]


class Due(enum.Enum):
    """What a deadline that passed asks of the round."""

    CLOSE_INPUTS = "close_inputs"
    """Half of ``round_timeout`` passed with inputs still open."""
    SILENT = "silent"
    """The servers still awaited were silent ``server_timeout`` after the others answered."""
    LATE = "late"
    """``round_timeout`` passed: the servers still awaited are left out."""
    OVER = "over"
    """1.5 ``round_timeout`` passed: the round yields nothing if it has no result yet."""


@dataclass(slots=True)
class RoundClock:
    round_timeout: float
    server_timeout: float
    opened: float = 0.0
    late: bool = False
    """The servers awaited at ``round_timeout`` were left out (``Due.LATE`` was handled)."""
    _silence: tuple[Hashable, float] | None = None

    def next(self, now: float, *, inputs_open: bool, silence: Hashable | None) -> tuple[float, Due]:
        """The earliest deadline, as (when, what). ``silence`` names the wait on servers the
        others already answered (None: there is none); a wait counts from the first call that
        sees it, so the caller asks after every event."""
        if self.late:
            due = [(self.opened + 1.5 * self.round_timeout, Due.OVER)]
        else:
            due = [(self.opened + self.round_timeout, Due.LATE)]
        if inputs_open:
            due.append((self.opened + self.round_timeout / 2, Due.CLOSE_INPUTS))
        if silence is None:
            self._silence = None
        else:
            if self._silence is None or self._silence[0] != silence:
                self._silence = (silence, now)
            due.append((self._silence[1] + self.server_timeout, Due.SILENT))
        return min(due, key=lambda d: d[0])


@dataclass(slots=True)
class IdleClock:
    """When a data owner or a server gives up on a model owner that stopped speaking: ``limit``
    (``idle_timeout``) seconds after it last did, or after the player started."""

    limit: float
    heard: float
    """When the model owner last spoke (or the player started)."""

    def spoke(self, now: float) -> None:
        self.heard = now

    def get_timer(self) -> float:
        return self.heard + self.limit

    def expired(self, now: float) -> bool:
        return now >= self.get_timer()


@dataclass(slots=True)
class ContactClock:
    """When a player gives up because no peer can talk to it: at ``limit``
    (``connect_timeout``) seconds after it started, or after each further ``limit``, if no peer
    has connected by then and TLS handshakes failed. A player that merely waits for peers that
    are not up yet (no handshake failed) waits on, and once a peer connected the clock is done."""

    limit: float
    started: float
    met: bool = False
    """A peer connected: whatever fails later is not this player's certificate."""

    def get_timer(self) -> float | None:
        return None if self.met else self.started + self.limit

    def expired(self, now: float, *, connected: bool, refused: bool) -> bool:
        """Whether to give up now (else, past the limit, look again one ``limit`` later)."""
        if self.met or connected:
            self.met = True
            return False
        if now < self.started + self.limit:
            return False
        if refused:
            return True
        self.started = now
        return False
