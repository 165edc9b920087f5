"""2-of-3 replicated secret sharing over Z_2^64 (pure; imports ring and prf).

x = x_0 + x_1 + x_2 (mod 2^64); server i holds the pair (x_i, x_{i+1 mod 3}) as an ``RShare``.
Any two servers together hold all three components; one server alone sees two uniformly random
components. Every component is held by two servers, which is what ``cross_check`` uses.

Seed-compressed input sharing: x_0 = PRG(s_0) and x_1 = PRG(s_1) are pure randomness, so a data
owner sends server 0 two seeds, server 1 (s_1, x_2) and server 2 (x_2, s_0), where
x_2 = x - x_0 - x_1: about 2 x 8d bytes upstream instead of 6 x 8d.

Products use the replicated multiplication of Araki et al. (CCS 2016, "High-throughput
semi-honest secure three-party computation with an honest majority"): server i computes
z_i = x_i y_i + x_i y_{i+1} + x_{i+1} y_i + alpha_i with alpha a pairwise-PRF share of zero,
then sends z_i to server i-1 (``reshare``), restoring the replicated form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.goldilocks import combine
from asyncmpc.crypto.prf import RandomBytes, ZeroSharer, expand, keystream_blocks, new_seed, round_nonce
from asyncmpc.crypto.ring import RingArray, as_ring, encode, ring_mul_public, ring_sum

__all__ = [
    "N_SERVERS",
    "Component",
    "InputSharer",
    "KEYED",
    "Keyed",
    "RShare",
    "Seed",
    "SeededShare",
    "add",
    "add_public",
    "cross_check",
    "dot_local",
    "materialize",
    "mul_local",
    "mul_public",
    "reconstruct",
    "reshare",
    "share",
    "share_seeded",
    "sub",
    "suspects",
]

N_SERVERS = 3


@dataclass(frozen=True, slots=True)
class Seed:
    """A share component given as the seed of its pseudo-random expansion."""

    key: bytes

    def __repr__(self) -> str:  # never print seed material
        return "Seed(<hidden>)"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A share component that is the stream of a key its data owner registered with the
    server beforehand, at the round's nonce (``prf.round_nonce``): nothing of it travels
    with the share, and the server can expand it before the share arrives."""


KEYED = Keyed()
Component = RingArray | Seed | Keyed


@dataclass(frozen=True, slots=True)
class RShare:
    """Server ``server``'s pair of components: a = x_server, b = x_{server+1 mod 3}."""

    server: int
    a: RingArray
    b: RingArray

    def __post_init__(self) -> None:
        if self.server not in (0, 1, 2):
            raise ValueError(f"server index must be 0, 1 or 2, got {self.server}")
        if self.a.shape != self.b.shape:
            raise ValueError(f"share components differ in shape: {self.a.shape} vs {self.b.shape}")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.a.shape

    def __repr__(self) -> str:  # never print share values
        return f"RShare(server={self.server}, shape={self.a.shape})"


@dataclass(frozen=True, slots=True)
class SeededShare:
    """What a data owner sends one server: its two components, each a seed or a vector."""

    server: int
    a: Component
    b: Component

    def __repr__(self) -> str:
        kinds = tuple(
            "seed" if isinstance(c, Seed) else "keyed" if isinstance(c, Keyed) else "vector" for c in (self.a, self.b)
        )
        return f"SeededShare(server={self.server}, components={kinds})"


def materialize(component: Component, shape: tuple[int, ...]) -> RingArray:
    """The component as a vector of ``shape`` (expanding a seed)."""
    if isinstance(component, Keyed):
        raise ValueError("a keyed component needs its registered key and the round to expand")
    if isinstance(component, Seed):
        return expand(component.key, shape)
    if component.shape != shape:
        raise ValueError(f"component has shape {component.shape}, expected {shape}")
    return component


class InputSharer:
    """Seed-compressed sharing with its randomness prepared ahead of the input.

    ``prepare(shape)`` draws fresh seeds s_0, s_1 and computes the mask PRG(s_0) + PRG(s_1)
    into a buffer kept between calls: it does not depend on the input, so a data owner runs it
    while it waits for the next round. ``share(x)`` then costs one subtraction,
    x_2 = x - mask, and ``share_reals`` encodes reals to fixed point and subtracts the mask in
    the same pass. Either uses up the seeds: the next share prepares anew if ``prepare`` was
    not called in between, so seeds are never used twice. With ``keep_buffers=False`` the mask
    is dropped after each share (for many owners in one process).

    ``keyed=True``: two long-term keys k_0, k_1 are drawn once (``keys``, registered with the
    servers that hold those components) and round r's mask is PRG(k_0, r) + PRG(k_1, r) with
    the round as nonce; the seed components are then ``KEYED``. Rounds must strictly
    increase from one share to the next, so no mask is ever used twice. ``rekey`` draws new
    keys (round numbers may then start again): a data owner does so whenever it loses the
    model owner, so a resumed model owner that asks again for a round number gets a mask
    from fresh streams.
    """

    def __init__(
        self,
        random_bytes: RandomBytes = os.urandom,
        *,
        keep_buffers: bool = True,
        keyed: bool = False,
    ) -> None:
        self._random_bytes = random_bytes
        self._keep = keep_buffers
        self.keys: tuple[Seed, Seed] | None = None
        if keyed:
            self.rekey()
        self._seeds: tuple[Component, Component] | None = None
        self._mask: RingArray | None = None
        self._round: int | None = None  # the round the prepared mask is for (keyed)
        self._last_round = 0

    def rekey(self) -> None:
        """Draw new long-term keys; what was prepared under the old ones is dropped."""
        self.keys = (Seed(new_seed(self._random_bytes)), Seed(new_seed(self._random_bytes)))
        self._seeds, self._round, self._last_round = None, None, 0

    def prepare(self, shape: tuple[int, ...], round_no: int | None = None) -> None:
        """Compute the next mask (keyed: round ``round_no``'s, which must be given)."""
        if self._mask is None or self._mask.shape != shape:
            self._mask = np.empty(shape, dtype=np.int64)
        if self.keys is not None:
            if round_no is None:
                raise ValueError("a keyed sharer prepares the mask of a given round")
            nonce = round_nonce(round_no)
            streams = [k.key for k in self.keys]
            for _ in keystream_blocks(streams, self._mask.size, into=self._mask, nonces=[nonce, nonce]):
                pass
            self._seeds, self._round = (KEYED, KEYED), round_no
            return
        s0, s1 = Seed(new_seed(self._random_bytes)), Seed(new_seed(self._random_bytes))
        for _ in keystream_blocks([s0.key, s1.key], self._mask.size, into=self._mask):
            pass
        self._seeds = (s0, s1)

    def share(self, x: RingArray, round_no: int | None = None) -> tuple[SeededShare, SeededShare, SeededShare]:
        """Split ring vector ``x`` into seed-compressed replicated shares for servers 0, 1, 2."""
        x = as_ring(x)
        x2 = np.subtract(x, self._ready(x.shape, round_no))
        return self._shares(self._take(round_no), x2)

    def share_reals(
        self, values: NDArray[np.float64], frac_bits: int, *, max_terms: int = 1, round_no: int | None = None
    ) -> tuple[SeededShare, SeededShare, SeededShare]:
        """Shares of ``encode(values, frac_bits, max_terms=...)``, encoded and masked in one pass.

        Raises EncodingError (see ``encode``) before any randomness is used up.
        """
        values = np.asarray(values, dtype=np.float64)
        x2 = encode(values, frac_bits, max_terms=max_terms, minus=self._ready(values.shape, round_no))
        return self._shares(self._take(round_no), x2)

    def _ready(self, shape: tuple[int, ...], round_no: int | None) -> RingArray:
        if self.keys is not None and (round_no is None or round_no <= self._last_round):
            raise ValueError(
                f"round {round_no} is not after round {self._last_round}: a keyed mask is never used twice"
            )
        if (
            self._seeds is None
            or self._mask is None
            or self._mask.shape != shape
            or (self.keys is not None and self._round != round_no)
        ):
            self.prepare(shape, round_no)
        assert self._mask is not None
        return self._mask

    def _take(self, round_no: int | None) -> tuple[Component, Component]:
        assert self._seeds is not None
        seeds, self._seeds = self._seeds, None
        if self.keys is not None and round_no is not None:
            self._last_round = round_no
        if not self._keep:
            self._mask = None
        return seeds

    @staticmethod
    def _shares(seeds: tuple[Component, Component], x2: RingArray) -> tuple[SeededShare, SeededShare, SeededShare]:
        s0, s1 = seeds
        return (SeededShare(0, s0, s1), SeededShare(1, s1, x2), SeededShare(2, x2, s0))


def share_seeded(x: RingArray, random_bytes: RandomBytes = os.urandom) -> tuple[SeededShare, SeededShare, SeededShare]:
    """Split ``x`` into seed-compressed replicated shares for servers 0, 1, 2."""
    return InputSharer(random_bytes).share(x)


def share(x: RingArray, random_bytes: RandomBytes = os.urandom) -> tuple[RShare, RShare, RShare]:
    """Split ``x`` into replicated shares, all components as vectors."""
    x = as_ring(x)
    seeded = share_seeded(x, random_bytes)
    comps = [materialize(s.a, x.shape) for s in seeded]
    return (RShare(0, comps[0], comps[1]), RShare(1, comps[1], comps[2]), RShare(2, comps[2], comps[0]))


def _components(shares: tuple[RShare, ...] | list[RShare]) -> dict[int, RingArray]:
    comps: dict[int, RingArray] = {}
    for s in shares:
        comps.setdefault(s.server, s.a)
        comps.setdefault((s.server + 1) % N_SERVERS, s.b)
    return comps


def reconstruct(shares: tuple[RShare, ...] | list[RShare], field: bool = False) -> RingArray:
    """x from the pairs of any two (or all three) distinct servers.

    Raises ValueError if fewer than two distinct servers' shares are given or shapes differ.
    Uses each component once and does not check agreement: see ``cross_check`` for that.
    """
    servers = {s.server for s in shares}
    if len(servers) < 2 or len(servers) != len(shares):
        raise ValueError(
            f"need shares of two or three distinct servers, got servers {sorted(s.server for s in shares)}"
        )
    comps = _components(shares)
    shapes = {c.shape for c in comps.values()}
    if len(shapes) != 1:
        raise ValueError(f"shares differ in shape: {sorted(shapes)}")
    if field:  # components in F_q (a norm-checked round): the centred sum
        return combine([comps[0], comps[1], comps[2]], field=True)
    return ring_sum([comps[0], comps[1], comps[2]])


def cross_check(shares: tuple[RShare, RShare, RShare] | list[RShare]) -> tuple[int, ...]:
    """Compare the twice-held components of all three servers' shares.

    Component j is held by server j (as ``a``) and server j-1 (as ``b``). Returns the servers
    that may have lied, empty when all components agree: if two components disagree, the one
    server holding both is the culprit; if one disagrees, either of its two holders may be.
    """
    by_server = {s.server: s for s in shares}
    if sorted(by_server) != [0, 1, 2]:
        raise ValueError(f"cross_check needs one share from each of servers 0, 1, 2, got {sorted(by_server)}")
    bad = [j for j in range(N_SERVERS) if not np.array_equal(by_server[j].a, by_server[(j - 1) % N_SERVERS].b)]
    return suspects(bad)


def suspects(bad_components: list[int]) -> tuple[int, ...]:
    """The servers that may have lied, given the components whose two copies disagree.

    Component j is held by servers j and j-1: one bad component implicates both; two or more
    implicate the server holding all of them (or everyone, if no server does).
    """
    if not bad_components:
        return ()
    holders = set(range(N_SERVERS))
    for j in bad_components:
        holders &= {j, (j - 1) % N_SERVERS}
    return tuple(sorted(holders)) if holders else (0, 1, 2)


def add(x: RShare, y: RShare) -> RShare:
    """Shares of x + y (local)."""
    _same_server(x, y)
    return RShare(x.server, np.add(x.a, y.a), np.add(x.b, y.b))


def sub(x: RShare, y: RShare) -> RShare:
    """Shares of x - y (local)."""
    _same_server(x, y)
    return RShare(x.server, np.subtract(x.a, y.a), np.subtract(x.b, y.b))


def mul_public(x: RShare, k: int | RingArray) -> RShare:
    """Shares of k * x for a public integer (or int64 array) k (local)."""
    return RShare(x.server, ring_mul_public(x.a, k), ring_mul_public(x.b, k))


def add_public(x: RShare, c: RingArray) -> RShare:
    """Shares of x + c for a public c: it is added to component 0 (held by servers 0 and 2)."""
    c = as_ring(c)
    a = np.add(x.a, c) if x.server == 0 else x.a
    b = np.add(x.b, c) if x.server == 2 else x.b
    return RShare(x.server, a, b)


def mul_local(x: RShare, y: RShare, zeros: ZeroSharer, tag: str) -> RingArray:
    """This server's additive share z_i of x * y (elementwise); pass it to ``reshare``.

    ``tag`` must be the same on all three servers and never reused with the same keys.
    """
    _same_server(x, y)
    z = np.multiply(x.a, y.a)
    z += np.multiply(x.a, y.b)
    z += np.multiply(x.b, y.a)
    z += zeros.zero_share(tag, z.shape)
    return z


def dot_local(x: RShare, y: RShare, zeros: ZeroSharer, tag: str) -> RingArray:
    """This server's additive share of the dot product over the last axis; pass it to ``reshare``."""
    _same_server(x, y)
    # einsum of 1-d operands returns a numpy scalar; keep 0-d arrays so wrapping adds stay silent
    z = np.array(np.einsum("...i,...i->...", x.a, np.add(y.a, y.b)), dtype=np.int64, ndmin=0)
    z += np.array(np.einsum("...i,...i->...", x.b, y.a), dtype=np.int64)
    z += zeros.zero_share(tag, z.shape)
    return z


def reshare(server: int, z_own: RingArray, z_from_next: RingArray) -> RShare:
    """Replicated shares again: server i keeps z_i and receives z_{i+1} from server i+1."""
    return RShare(server, np.asarray(z_own, dtype=np.int64), np.asarray(z_from_next, dtype=np.int64))


def _same_server(x: RShare, y: RShare) -> None:
    if x.server != y.server:
        raise ValueError(f"shares of different servers: {x.server} and {y.server}")
    if x.shape != y.shape:
        raise ValueError(f"shares differ in shape: {x.shape} vs {y.shape}")
