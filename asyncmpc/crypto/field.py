"""The prime field F_p, p = 2^61 - 1, for information-theoretic MACs (numpy only).

Why a field: a linear MAC over the ring Z_2^64 (t = alpha * x, or <r, x>) is unsound, since
the ring has zero divisors: a change d = 2^63 of x changes alpha * x by alpha * 2^63, which is
0 mod 2^64 for every even alpha, so half of all keys accept it (Cramer, Damgard, Escudero,
Scholl, Xing, "SPDZ2k: Efficient MPC mod 2^k for Dishonest Majority", CRYPTO 2018, who
therefore compute MACs modulo 2^(k+s)). In a prime field every non-zero difference d has an
inverse, so for a uniform secret key, r * d takes each value with probability 1/p.

Ring values (signed fixed point, int64) stand for integers; ``macs`` reads those within
[-MAX_ABS, MAX_ABS] as field elements v mod p, which is exact for their sums while the sums
stay in that range (61-bit values split into four 16-bit limbs whose products BLAS adds
exactly in float64, a block of 2^15 elements at a time).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["MAX_ABS", "P", "FieldArray", "reduce_words"]

FieldArray = NDArray[np.uint64]
P = (1 << 61) - 1
"""The modulus, a Mersenne prime."""
MAX_ABS = (P - 1) // 2
"""The largest |integer| that a MAC carries through the field."""

_P = np.uint64(P)


def reduce_words(words: ArrayLike) -> FieldArray:
    """Uniform 64-bit words (say, a keystream) -> field elements: the low 61 bits, folded.

    The result is within statistical distance 2^-61 of uniform (only 0 is twice as likely).
    """
    w = np.asarray(words).view(np.uint64) & _P
    np.minimum(w, w - _P, out=w)  # w - p where w >= p (w = p is the only such value): 0
    return w
