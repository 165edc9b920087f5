"""The norm check in Z_2^64 with servers that compute honestly (pure; docs/normcheck.md, "a
staged way in"): what an owner sends after the coin, and the relations the servers check.

After the coin fixes the K projections (``projections``), an owner with vector x sends shares of
bits (its *witness*):

- for each projection y_j = <r_j, x>: the L bits of v_j = y_j + T and of u_j = T - y_j, with
  2^L > 2T; v_j = y_j + T and u_j = T - y_j (mod 2^64) then put y_j in [-T, 2^L - T) and in
  (T - 2^L, T], that is in [-T, T];
- the L_s bits of S = sum x~^2 and of e = B^2 - S (2^L_s > B^2); S, the servers compute
  themselves (the replicated dot product), so both recompositions put S in [0, B^2].

The servers check every bit and every recomposition:

- a bit b: b (1 - b) = 0 in Z_2^64 holds only for b in {0, 1} (one of b and 1 - b is odd, so the
  other is 0 mod 2^64). It is checked one bit at a time: a random combination of the products
  is unsound in the ring (b = 1 + 2^63 gives 2^63, which any even coefficient hides). Opening
  b (1 - b) reveals nothing of an honest owner's bits: it is 0.
- a recomposition: sum_t 2^t b_t minus the value (y_j + T, T - y_j, S, B^2 - S), linear in the
  shares, opened: 0 for an honest owner, whatever its x.

With every check passed and every y_j in [-T, T], the wrap-around test gives ||x~|| <= 8.6 T
except with probability 2^-K, so S is x~'s true squared norm and S <= B^2 holds over the
integers. Against a server that lies about its products this proves nothing: that is the field
proof's job (``flp``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asyncmpc.crypto.prf import ZeroSharer
from asyncmpc.crypto.projections import WrapTest, project
from asyncmpc.crypto.ring import RingArray
from asyncmpc.crypto.rss import RShare, mul_local

__all__ = ["NormBits", "bit_residues", "recompositions", "witness"]


@dataclass(frozen=True, slots=True)
class NormBits:
    """The layout of an owner's witness for ``test`` (the bound B, K and T)."""

    test: WrapTest

    @property
    def width(self) -> int:
        """L: bits of a projection's offset, 2^L > 2T."""
        return (2 * self.test.threshold).bit_length()

    @property
    def norm_width(self) -> int:
        """L_s: bits of S and of B^2 - S, 2^L_s > B^2."""
        return (self.test.bound**2).bit_length()

    @property
    def size(self) -> int:
        return 2 * self.test.k * self.width + 2 * self.norm_width

    def bits(self, projections: list[int], squared_norm: int) -> RingArray:
        """The witness (0/1 values) of a vector with these signed ``projections`` and this
        ``squared_norm``: the offsets y + T and T - y of each projection, then S and B^2 - S.
        ValueError if a projection is outside [-T, T] or S over B^2: the vector fails."""
        test = self.test
        t, b2 = test.threshold, test.bound**2
        if any(abs(y) > t for y in projections):
            raise ValueError("a projection of the vector is outside [-T, T]: its norm is over the bound")
        if squared_norm > b2:
            raise ValueError("the vector's squared norm is over the bound")
        rows = [(y + t, self.width) for y in projections] + [(t - y, self.width) for y in projections]
        rows += [(squared_norm, self.norm_width), (b2 - squared_norm, self.norm_width)]
        return np.array([(v >> i) & 1 for v, width in rows for i in range(width)], dtype=np.int64)

    def split(self, bits: RingArray) -> tuple[RingArray, RingArray, RingArray, RingArray]:
        """(v bits (K, L), u bits (K, L), S bits (L_s,), e bits (L_s,)) of a witness (or of a
        share of one)."""
        if bits.shape != (self.size,):
            raise ValueError(f"a witness of {bits.shape} elements, expected ({self.size},)")
        k, w, s = self.test.k, self.width, self.norm_width
        v, u = bits[: k * w].reshape(k, w), bits[k * w : 2 * k * w].reshape(k, w)
        return v, u, bits[2 * k * w : 2 * k * w + s], bits[2 * k * w + s :]


def witness(x: RingArray, coin: bytes, layout: NormBits) -> RingArray:
    """An owner's bits for vector ``x`` under the round's ``coin``. ValueError if x does not
    pass (a projection out of [-T, T], or its squared norm over B^2): an honest owner clips
    first, and one whose vector fails has nothing to prove."""
    y = [int(v) for v in project(coin, layout.test.k, [x])[0].tolist()]
    return layout.bits(y, sum(int(v) ** 2 for v in x.tolist()))


def _weights(width: int) -> RingArray:
    return (np.ones(width, dtype=np.uint64) << np.arange(width, dtype=np.uint64)).view(np.int64)


def _word(value: int) -> RingArray:
    """A non-negative integer mod 2^64 as a one-element int64 array (arrays wrap silently)."""
    return np.array([value % 2**64], dtype=np.uint64).view(np.int64)


def recompositions(layout: NormBits, y: RingArray, bits: RingArray, s: RingArray, *, constants: bool) -> RingArray:
    """The recomposition residues, linear in (projections ``y`` (K,), ``bits``, S (a one-element
    array)): sum 2^t b_t minus y + T, T - y, S and B^2 - S, as K + K + 2 ring elements. On
    additive parts of (y, bits, S) the residues add up to the whole's; the constants (T, B^2)
    go into exactly one part (``constants``). All zero for an honest owner."""
    v, u, s_bits, e_bits = layout.split(bits)
    w, ws = _weights(layout.width), _weights(layout.norm_width)
    t = _word(layout.test.threshold if constants else 0)
    b2 = _word(layout.test.bound**2 if constants else 0)
    k = layout.test.k
    out = np.empty(2 * k + 2, dtype=np.int64)
    out[:k] = (v * w).sum(axis=1) - y - t
    out[k : 2 * k] = (u * w).sum(axis=1) + y - t
    out[2 * k : 2 * k + 1] = (s_bits * ws).sum(keepdims=True) - s
    out[2 * k + 1 :] = (e_bits * ws).sum(keepdims=True) + s - b2
    return out


def bit_residues(bits: RShare, zeros: ZeroSharer, tag: str) -> RingArray:
    """This server's additive part of b (1 - b) for every bit of a witness (the replicated
    product, Araki et al. CCS 2016); the three parts add up to 0 exactly when every b is 0 or 1."""
    return bits.a - mul_local(bits, bits, zeros, tag)
