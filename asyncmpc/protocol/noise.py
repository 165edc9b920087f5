"""The differential-privacy noise a compute server deals into one round's sums (pure:
numpy and prf only; the noise itself comes from ``asyncmpc.learning.privacy``).

Every server of the round (a *dealer*) draws its own integer noise n and shares it, as a data
owner shares an input, so that the opened sum carries every dealer's n and no other server
learns it (SECURITY.md, "Differential privacy"). Component j of a sharing is held by server j
(its a) and server j-1 (its b). Dealer s draws a fresh seed and sets its noise's components to

    x_s = n - m,   x_{s+1} = m,   x_{s+2} = 0,      m = the seed's stream,

so it adds (n - m, m) to its own (a, b) sums, sends the seed to server s+1 (which adds m to its
a) and the vector n - m to server s-1 (which adds it to its b). Server s+1 sees only a stream,
server s-1 only a uniformly masked vector: neither learns anything about n. The two holders of
each component add the same thing, so the result shares still cross-check. With two servers
(the third down) the same holds: each live server needs only the other's part, and the
components the down server would have held are reconstructed from the live one that holds them.

In a norm-checked round (``[protocol] norm_bound``) the sums are in F_q (``crypto.goldilocks``),
so the noise is dealt there (``field``): m is the seed's stream of uniform field elements
(``goldilocks.from_seed``), n - m is taken mod q, and every part is added in F_q; the
masked vector is again uniform, so neither neighbour learns anything about n.
A server releases a round's sum only with the parts of every dealer in (``ready``), and only
once per round: asking again for another set of contributors would open two sums under the same
noise, whose difference is noise-free (``protocol.server`` refuses that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.prf import new_seed
from asyncmpc.crypto.ring import RingArray
from asyncmpc.crypto.rss import Component, Keyed, Seed, materialize
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.sums import ZERO_NONCE, Streams, add_streams

__all__ = ["NoiseDraw", "PositionedDraw", "RoundNoise", "deal"]

N_SERVERS = 3

NoiseDraw = Callable[[int, tuple[int, ...]], RingArray]
"""(number of dealers, shape) -> this server's noise for a round (``privacy.noise``)."""
PositionedDraw = Callable[[int, int, tuple[int, ...]], RingArray]
"""(position, number of dealers, shape) -> this server's DP-FTRL noise for the round at that
position (``privacy.noise.TreeNoise.draw``)."""


@dataclass(slots=True)
class RoundNoise:
    """Round noise at server ``index``: its own part and the parts it receives."""

    index: int
    dealers: frozenset[int]
    shape: tuple[int, ...]
    own: tuple[RingArray, bytes]
    """This server's part as a dealer: the vector n - m for its a, the seed of m for its b."""
    owed: list[tuple[int, Component]] = field(default_factory=list)
    """What it sends the other dealers: (server index, the seed or the vector n - m)."""
    received: dict[int, Component] = field(default_factory=dict)
    applied: bool = False
    in_field: bool = False
    """The round's sums are in F_q (a norm-checked round): every part is a field vector."""

    @property
    def prev(self) -> int:
        return (self.index - 1) % N_SERVERS

    @property
    def next(self) -> int:
        return (self.index + 1) % N_SERVERS

    @property
    def missing(self) -> tuple[int, ...]:
        """Dealers whose part has not come."""
        return tuple(d for d in (self.prev, self.next) if d in self.dealers and d not in self.received)

    @property
    def ready(self) -> bool:
        return not self.missing

    def receive(self, dealer: int, part: Component, peer: str) -> None:
        """Dealer ``dealer``'s part: a seed from the previous server, a vector from the next. A
        part that comes again replaces the first (a dealer that dealt the round again after a
        restart of the model owner), until the noise is in the sums. RemoteProtocolError if
        it is not the part that dealer owes."""
        if dealer not in self.dealers:
            raise RemoteProtocolError(f"noise for a round that server {dealer} does not deal in", peer=peer)
        if isinstance(part, Keyed) or (dealer == self.prev) != isinstance(part, Seed):
            want = "a seed" if dealer == self.prev else "a vector"
            raise RemoteProtocolError(f"noise part of the wrong kind: server {dealer} owes {want}", peer=peer)
        if not isinstance(part, Seed) and part.shape != self.shape:
            raise RemoteProtocolError(f"noise part of shape {part.shape}, expected {self.shape}", peer=peer)
        if self.in_field and not isinstance(part, Seed) and np.any(part.view(np.uint64) >= gf.Q):
            raise RemoteProtocolError("noise part of a norm-checked round with elements outside F_q", peer=peer)
        if not self.applied:
            self.received[dealer] = part

    def apply(self, sums: list[RingArray | None]) -> None:
        """Add every part into the sums of components (a, b), once."""
        if self.applied:
            return
        if not self.ready:
            raise ValueError(f"noise from servers {self.missing} has not come")
        self.applied = True
        if self.in_field:
            self._apply_field(sums)
            return
        vector, seed = self.own
        streams: list[Streams] = [(None, (seed, ZERO_NONCE))]
        from_prev = self.received.get(self.prev)
        if isinstance(from_prev, Seed):
            streams.append(((from_prev.key, ZERO_NONCE), None))
        add_streams(sums, self.shape, streams)
        from_next = self.received.get(self.next)
        for i, vec in ((0, vector), (1, None if from_next is None else materialize(from_next, self.shape))):
            if vec is None:
                continue
            acc = sums[i]
            if acc is None:
                sums[i] = vec.copy()
            else:
                np.add(acc, vec, out=acc)

    def _apply_field(self, sums: list[RingArray | None]) -> None:
        """``apply`` in F_q: the own vector into a, the own seed's stream into b, the previous
        dealer's stream into a, the next dealer's vector into b."""
        vector, seed = self.own
        parts: list[tuple[int, RingArray]] = [(0, vector), (1, _field_stream(seed, self.shape))]
        from_prev = self.received.get(self.prev)
        if isinstance(from_prev, Seed):
            parts.append((0, _field_stream(from_prev.key, self.shape)))
        from_next = self.received.get(self.next)
        if from_next is not None:
            parts.append((1, materialize(from_next, self.shape)))
        for i, vec in parts:
            acc = sums[i]
            if acc is None:
                sums[i] = vec.copy()
            else:
                acc.view(np.uint64)[...] = gf.add(acc.view(np.uint64), vec.view(np.uint64))


def _field_stream(seed: bytes, shape: tuple[int, ...]) -> RingArray:
    """A seed's mask in F_q (as int64 words)."""
    n = int(np.prod(shape))
    return gf.from_seed(seed, n, "noise mask").view(np.int64).reshape(shape)


def deal(
    index: int, dealers: frozenset[int], shape: tuple[int, ...], draw: NoiseDraw, in_field: bool = False
) -> RoundNoise:
    """Server ``index``'s noise for a round on ``dealers``: its state, with the part it owes
    each other dealer (``owed``); with ``in_field``, dealt in F_q."""
    noise = draw(len(dealers), shape)
    seed = new_seed()
    if in_field:
        mask = _field_stream(seed, shape).reshape(-1).view(np.uint64)
        signed = np.ascontiguousarray(noise, dtype=np.int64).reshape(-1)
        masked = gf.sub(gf.from_signed(signed), mask).view(np.int64).reshape(shape)
    else:
        masked = materialize(Seed(seed), shape)  # a fresh array: the mask m, then n - m in place
        np.subtract(noise, masked, out=masked)  # wraps in the ring, as shares do
    rnd = RoundNoise(index, dealers, shape, (masked, seed), in_field=in_field)
    if rnd.next in dealers:
        rnd.owed.append((rnd.next, Seed(seed)))
    if rnd.prev in dealers:
        rnd.owed.append((rnd.prev, masked))
    return rnd
