"""A compute server's running sums of one ordinary round (pure; numpy and prf only).

Vector components are added into the sums as they arrive, so memory does not grow with the
number of owners (a sum starts as the first vector received, when that one is writable: no
zero fill, no addition). Streams (seeds, keyed components) wait until the server is idle or
needs the sums, and are then expanded together: all waiting streams are added a cache-sized
block at a time, so the sums cross memory once per batch, not once per stream. An owner can be
left out of the sum only if it has no vector in it (its streams are dropped while waiting,
subtracted after); a vector, once added, cannot be.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from asyncmpc.crypto.prf import NONCE_BYTES, add_keystreams, keystream_blocks
from asyncmpc.crypto.ring import RingArray

if TYPE_CHECKING:
    from asyncmpc.protocol.agreement import Agreement
    from asyncmpc.protocol.commitment import Commitment
    from asyncmpc.protocol.noise import RoundNoise
    from asyncmpc.protocol.normcheck import NormChecks
    from asyncmpc.wire.messages import InputShare

__all__ = ["ZERO_NONCE", "Guess", "RoundPhase", "RunningSums", "Stream", "Streams", "add_streams"]

ZERO_NONCE = bytes(NONCE_BYTES)
"""The nonce of explicit seeds."""
Stream = tuple[bytes, bytes]
"""(key, nonce): a share component given by its pseudo-random stream."""
Streams = tuple[Stream | None, Stream | None]
"""An owner's streams for components a and b (None: that component comes as a vector)."""


class RoundPhase(enum.Enum):
    """Where a round is at a server (``RunningSums.phase``); every change goes through
    ``RunningSums.enter``, which keeps to ``_MOVES``."""

    COLLECTING = "collecting"
    """Inputs are open: shares are taken."""
    REPORTED = "reported"
    """Inputs are closed: ``Holding`` went out, or an early release was refused; waiting for
    ``Aggregate``."""
    DEFERRED = "deferred"
    """Under [privacy]: a result is due (``RunningSums.due``) and waits for a dealer's noise, or
    for the other servers' commitment to the same release."""
    SENT = "sent"
    """A ``ResultShare`` went out (its arrays may still sit in a send buffer); the model owner
    may ask again."""


_MOVES: dict[RoundPhase, frozenset[RoundPhase]] = {
    RoundPhase.COLLECTING: frozenset({RoundPhase.REPORTED, RoundPhase.DEFERRED, RoundPhase.SENT}),
    RoundPhase.REPORTED: frozenset({RoundPhase.REPORTED, RoundPhase.DEFERRED, RoundPhase.SENT}),
    RoundPhase.DEFERRED: frozenset({RoundPhase.REPORTED, RoundPhase.DEFERRED, RoundPhase.SENT}),
    RoundPhase.SENT: frozenset({RoundPhase.SENT}),
}


@dataclass(slots=True)
class RunningSums:
    """One round's state at a server: the running sums of both components, and per owner only
    its streams."""

    owners: frozenset[str]
    shape: tuple[int, ...]
    sums: list[RingArray | None] = field(default_factory=lambda: [None, None])
    """The running sums of components a and b; None until something is added."""
    held: set[str] = field(default_factory=set)
    """Owners whose share arrived."""
    vectors: set[str] = field(default_factory=set)
    """Held owners with a vector component in the sums."""
    streams: dict[str, Streams] = field(default_factory=dict)
    """Owners whose streams belong in the sums: held, or keyed and expected."""
    in_sums: set[str] = field(default_factory=set)
    """Owners whose streams are in the sums already."""
    phase: RoundPhase = RoundPhase.COLLECTING
    mac_key: bytes = b""
    full: bool = False
    """Opened for two servers: the early result carries both components in full."""
    mac: bool = False
    """A MAC round (``protocol.authenticated``): field components and digests are kept per owner."""
    fields: dict[str, tuple[int, int]] = field(default_factory=dict)
    """In a MAC round: each held owner's two field components (t_i, t_{i+1})."""
    digests: dict[str, bytes] = field(default_factory=dict)
    """In a MAC round: each held owner's digest pair, as this server received its share."""
    agreement: Agreement | None = None
    """With an early release (a one-time key, or two servers): the servers' agreement on the
    contributors (``protocol.agreement``)."""
    noise: RoundNoise | None = None
    """Under [privacy]: the noise dealt into this round (``protocol.noise``)."""
    released: frozenset[str] | None = None
    """The contributors whose sum went out (``protocol.releases``: one set per round)."""
    inputs: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    """Held owner -> the ``input_id`` and ``key_id`` its share carried."""
    due: tuple[tuple[str, ...], bytes] | None = None
    """In ``RoundPhase.DEFERRED``: the result due (contributors, tag key)."""
    servers: frozenset[int] = frozenset()
    """The round's servers (indices), as its ``OpenRound`` named them."""
    position: int = 0
    """Under [privacy] mechanism "tree": the round's position (from 1; 0: none)."""
    commitment: Commitment | None = None
    """Under [privacy]: the one release this server commits to, and its peers' (``protocol.commitment``)."""
    norm: NormChecks | None = None
    """A norm-checked round: the checks of its owners' inputs (``protocol.normcheck``); sums in F_q."""
    pending: dict[str, tuple[InputShare, tuple[RingArray, RingArray]]] = field(default_factory=dict)
    """In a norm-checked round: owners whose share arrived and awaits its verdict."""

    def enter(self, phase: RoundPhase) -> None:
        if phase not in _MOVES[self.phase]:
            raise AssertionError(f"a server's round cannot go from {self.phase.value} to {phase.value}")
        self.phase = phase

    @property
    def inputs_open(self) -> bool:
        return self.phase is RoundPhase.COLLECTING

    def flush(self) -> None:
        """Expand the waiting streams into the sums."""
        waiting = [o for o in self.streams if o not in self.in_sums]
        if waiting:
            add_streams(self.sums, self.shape, [self.streams[o] for o in waiting])
            self.in_sums.update(waiting)

    def sum(self, i: int) -> RingArray:
        """Component i's sum (zeros if nothing was added)."""
        acc = self.sums[i]
        if acc is None:
            self.sums[i] = acc = np.zeros(self.shape, dtype=np.int64)
        return acc

    def drop_streams(self, owner: str) -> None:
        """Take ``owner``'s streams out of the round (subtracting them if already added)."""
        streams = self.streams.pop(owner, None)
        if streams is None or owner not in self.in_sums:
            return
        self.in_sums.discard(owner)
        for i, st in enumerate(streams):
            if st is not None:
                add_keystreams(self.sum(i), [st[0]], subtract=True, nonces=[st[1]])

    def settle(self, keep: set[str] | frozenset[str]) -> list[str]:
        """Leave every owner outside ``keep`` out of the sums; return those who cannot be (a
        vector of theirs is in the sums), and then change nothing."""
        leave = (self.held | set(self.streams)) - set(keep)
        stuck = sorted(leave & self.vectors)
        if stuck:
            return stuck
        for owner in leave:
            self.drop_streams(owner)
            self.held.discard(owner)
        return []


@dataclass(slots=True)
class Guess:
    """Sums of keyed streams expanded ahead for a round not opened yet."""

    round_no: int
    shape: tuple[int, ...]
    streams: dict[str, Streams]
    sums: list[RingArray | None]


def add_streams(sums: list[RingArray | None], shape: tuple[int, ...], streams: list[Streams]) -> None:
    """Add every stream of ``streams`` into the sums of its component, a block at a time."""
    for i in range(2):
        chosen = [st[i] for st in streams if st[i] is not None]
        keys, nonces = [k for k, _ in chosen], [n for _, n in chosen]  # type: ignore[misc]
        if not keys:
            continue
        acc = sums[i]
        if acc is None:  # the streams' sum is written, not added
            sums[i] = acc = np.empty(shape, dtype=np.int64)
            for _ in keystream_blocks(keys, acc.size, into=acc, nonces=nonces):
                pass
        else:
            add_keystreams(acc, keys, nonces=nonces)
