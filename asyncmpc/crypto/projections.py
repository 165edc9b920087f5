"""Random ternary projections of vectors over Z_2^64, exactly (pure; the norm check's
wrap-around test, see docs/normcheck.md).

A vector x in Z_2^64^d is read as signed (its centred lift x~ in [-2^63, 2^63)). Its squared
norm computed mod 2^64 can wrap: x = 2^63 e_1 has squared norm 0 there. Before that sum may be
compared with a bound, a vector must pass K projections <r_j, x> (mod 2^64, read signed) each
within [-T, T], with every entry of every r_j drawn independently as -1, 0, +1 with
probabilities 1/4, 1/2, 1/4, after x is fixed. This is the wrap-around check of PINE (G. N.
Rothblum, E. Omri, J. Chen, K. Talwar, "PINE: Efficient Norm-Bound Verification for
Secret-Shared Vectors", arXiv 2311.10237; the entries' distribution is draft-chen-cfrg-vdaf-pine
section 4.1.3), carried over from a prime field to the ring:

- One coordinate with |x~_k| > 2T: given the other entries, <r, x> is one of rho, rho + x_k,
  rho - x_k (probabilities 1/2, 1/4, 1/4); rho and rho +- x_k cannot both lie in [-T, T], so a
  projection passes with probability at most 1/2. That is tight in the ring: 2^63 e_1 passes
  exactly half the time (any linear test of vectors in 2^63 {0,1}^d is a parity test, so no
  entry distribution does better; +-1 entries alone are broken: (2^63, 2^63) always passes).
- Every |x~_k| <= 2T: then |<r, x~>| <= ||x~||_1 < 2^63 does not wrap, and by Berry-Esseen
  (summands r_k x~_k, E r^2 = E|r|^3 = 1/2) a projection passes with probability at most
  4.3 T / ||x~||, at most 1/2 once ||x~|| >= 8.6 T.

So a vector with ||x~|| > 8.6 T passes all K projections with probability at most 2^-K; one
with ||x~|| <= B = T / alpha fails one with probability at most 2 K e^{-alpha^2} (Hoeffding:
E e^{t r} = cosh^2(t/2) <= e^{t^2/4}). With K = 48 and alpha = 7: soundness 2^-48, an honest
vector fails with probability about 2^-64.

Projections are computed exactly with float64 matrix products: r has entries in {-1, 0, 1},
x is split into two 32-bit limbs, and a block of at most 2^14 columns sums to below 2^47, well
inside float64's 53 bits; the limbs are recombined mod 2^64. Each entry is a - b for two
keystream bits a, b under the round's coin (``prf`` AES-CTR), so every server that holds the
coin draws the same projections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.prf import expand, nonce_for
from asyncmpc.crypto.ring import RingArray

__all__ = ["ALPHA", "BLOCK", "K", "WrapTest", "centred_abs", "project", "project_field", "ternary"]

K = 48
"""Projections per vector: soundness 2^-K."""
ALPHA = 7.0
"""T = ceil(ALPHA * B): an honest vector fails one of K projections with probability
2 K e^{-ALPHA^2}, about 2^-64."""
BLOCK = 1 << 14
"""Columns per matrix product: a block's partial sums stay below 2^(14 + 32) < 2^53."""
_NO_WRAP = 8.6
"""A vector that passes all K projections has norm at most this many T (but with 2^-K)."""


@dataclass(frozen=True, slots=True)
class WrapTest:
    """The wrap-around test for integer norm bound ``bound`` (the L2 bound in encoded units)."""

    bound: int
    k: int = K
    alpha: float = ALPHA

    def __post_init__(self) -> None:
        if self.bound < 1:
            raise ValueError(f"norm bound {self.bound} must be at least 1 in encoded units")
        if (_NO_WRAP * self.threshold) ** 2 >= 2.0**64:
            raise ValueError(
                f"norm bound {self.bound} is too large to check in Z_2^64: the squared norm of a vector "
                f"that passes could wrap (at most {self.max_bound()} in encoded units)"
            )

    @property
    def threshold(self) -> int:
        """T: a projection passes when its signed value is within [-T, T]."""
        return math.ceil(self.alpha * self.bound)

    def max_bound(self) -> int:
        """The largest bound this test can serve with ``alpha``."""
        return int(2.0**32 / (_NO_WRAP * self.alpha))

    def passes(self, y: RingArray) -> NDArray[np.bool_]:
        """Which projections (signed values mod 2^64) lie within [-T, T]."""
        return centred_abs(y) <= self.threshold


def centred_abs(y: RingArray) -> NDArray[np.uint64]:
    """|y~| for int64 ring elements y, as uint64 (|-2^63| = 2^63 fits)."""
    u = y.view(np.uint64)
    return np.where(y < 0, (~u) + np.uint64(1), u)


def ternary(seed: bytes, k: int, lo: int, hi: int) -> NDArray[np.float64]:
    """Rows 0..k-1, columns lo..hi-1 (one block: ``lo`` a multiple of ``BLOCK``) of the
    projection matrix under ``seed``: entries a - b in {-1, 0, 1} for keystream bits a, b."""
    if lo % BLOCK or not 0 < hi - lo <= BLOCK:
        raise ValueError(f"columns {lo}..{hi} are not one block of at most {BLOCK}")
    n = hi - lo
    words = (k * 2 * BLOCK + 63) // 64  # every block draws a full one, whatever its width
    stream = expand(seed, words, nonce_for(f"projections:{k}:{lo // BLOCK}"))
    bits = np.unpackbits(stream.view(np.uint8)[: k * 2 * BLOCK // 8]).reshape(k, 2 * BLOCK)[:, : 2 * n]
    signed = bits.view(np.int8)
    return (signed[:, 0::2] - signed[:, 1::2]).astype(np.float64)


def _limb_sums(seed: bytes, k: int, words: Sequence[NDArray[np.uint64]]) -> tuple[RingArray, RingArray]:
    """The k projections of each vector of 64-bit words, as two exact integer sums per
    projection: over the words' low and high 32-bit halves ((len(words), k) each, int64)."""
    d = words[0].shape[0]
    if any(v.shape != (d,) for v in words):
        raise ValueError("vectors must be of one length")
    total = np.zeros((2 * len(words), k), dtype=np.int64)
    limbs = np.empty((BLOCK, 2 * len(words)), dtype=np.float64)
    for lo in range(0, d, BLOCK):
        hi = min(d, lo + BLOCK)
        for i, u in enumerate(words):
            limbs[: hi - lo, 2 * i] = u[lo:hi] & np.uint64(0xFFFFFFFF)
            limbs[: hi - lo, 2 * i + 1] = u[lo:hi] >> np.uint64(32)
        partial = ternary(seed, k, lo, hi) @ limbs[: hi - lo]  # (k, 2 n), exact
        total += partial.T.astype(np.int64)
    return total[0::2], total[1::2]


def project(seed: bytes, k: int, vectors: Sequence[RingArray]) -> RingArray:
    """The k projections of each vector (all of length d) under ``seed``: a (len(vectors), k)
    int64 array, exact mod 2^64. One draw of the matrix serves every vector."""
    if not vectors:
        return np.zeros((0, k), dtype=np.int64)
    if any(v.dtype != np.int64 for v in vectors):
        raise ValueError("vectors must be int64 arrays")
    low, high = _limb_sums(seed, k, [v.view(np.uint64) for v in vectors])
    return (low.view(np.uint64) + (high.view(np.uint64) << np.uint64(32))).view(np.int64)


def project_field(seed: bytes, k: int, vectors: Sequence[gf.FieldArray]) -> gf.FieldArray:
    """The same projections of vectors over F_q (``goldilocks``), exact mod q: the field's
    wrap-around test (PINE's own), on an owner's field sharing."""
    if not vectors:
        return np.zeros((0, k), dtype=np.uint64)
    if any(v.dtype != np.uint64 for v in vectors):
        raise ValueError("field vectors must be uint64 arrays")
    low, high = _limb_sums(seed, k, list(vectors))
    shift = np.full(high.shape, 1 << 32, dtype=np.uint64)
    return gf.add(gf.from_signed(low), gf.mul(gf.from_signed(high), shift))
