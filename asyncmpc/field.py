"""Layer 1: the prime field F_p, p = 2^61 - 1, on uint64 ndarrays, for information-theoretic MACs.

Imports numpy only; every operation is vectorised. Elements are held reduced, in [0, p).

Why a field: a MAC t = alpha * x over the ring Z_2^64 is unsound, since the ring has zero
divisors: a change d = 2^63 of x changes alpha * x by alpha * 2^63, which is 0 mod 2^64 for
every even alpha, so half of all keys accept it (Cramer, Damgard, Escudero, Scholl, Xing,
"SPDZ2k: Efficient MPC mod 2^k for Dishonest Majority", CRYPTO 2018, who therefore compute
MACs modulo 2^(k+s)). In a prime field every non-zero difference d has an inverse, so for a
uniform secret alpha, alpha * d takes each value with probability 1/p: a forged pair
(x + d, t + e) passes with probability 1/p ~ 2^-61 per element.

p = 2^61 - 1 is a Mersenne prime: since 2^61 = 1 mod p, a product reduces with shifts and
masks, and a product of two elements splits into 32-bit limbs whose partial products fit in
64 bits, so numpy computes it exactly without wider integers.

Ring values (signed fixed point, int64) enter the field by ``from_ring``: v -> v mod p, which
is exact for sums of integers while they stay below p / 2 in absolute value (``MAX_ABS``);
``to_signed`` maps back.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_ABS",
    "P",
    "FieldArray",
    "as_field",
    "f_add",
    "f_mul",
    "f_neg",
    "f_sub",
    "f_sum",
    "from_ring",
    "reduce_words",
    "to_signed",
]

FieldArray = NDArray[np.uint64]
P = (1 << 61) - 1
"""The modulus, a Mersenne prime."""
MAX_ABS = (P - 1) // 2
"""The largest |integer| that ``from_ring`` and ``to_signed`` carry through the field."""

_P = np.uint64(P)
_MASK32 = np.uint64(0xFFFFFFFF)
_MASK29 = np.uint64((1 << 29) - 1)
_S29, _S32, _S61 = np.uint64(29), np.uint64(32), np.uint64(61)
_EIGHT = np.uint64(8)


def _fold(x: FieldArray) -> FieldArray:
    """x mod p, in place, for any uint64 x: (x mod 2^61) + (x >> 61) is below 2^61 + 8, then
    one conditional subtraction (min(y, y - p) picks y - p exactly when y >= p, since the
    unsigned subtraction wraps to a huge value otherwise)."""
    high = x >> _S61
    np.bitwise_and(x, _P, out=x)
    np.add(x, high, out=x)
    return _below_p(x)


def _below_p(y: FieldArray) -> FieldArray:
    """y - p where y >= p (y < 2p), in place."""
    np.minimum(y, y - _P, out=y)
    return y


def as_field(values: ArrayLike) -> FieldArray:
    """Non-negative integers below p as a uint64 array; ValueError for anything else."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"field elements must be integers, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or int(arr.max()) >= P):
        raise ValueError("field elements must lie in [0, 2^61 - 1)")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def reduce_words(words: ArrayLike) -> FieldArray:
    """Uniform 64-bit words (say, a keystream) -> field elements: the low 61 bits, folded.

    The result is within statistical distance 2^-61 of uniform (only 0 is twice as likely).
    """
    w = np.asarray(words).view(np.uint64) & _P
    return _below_p(w)


def f_add(x: FieldArray, y: FieldArray) -> FieldArray:
    return _below_p(x + y)  # below 2^62: no wrap


def f_neg(x: FieldArray) -> FieldArray:
    return _below_p(_P - x)  # p - 0 = p folds to 0


def f_sub(x: FieldArray, y: FieldArray) -> FieldArray:
    return _below_p(x + (_P - y))  # below 2p


def f_sum(arrays: list[FieldArray]) -> FieldArray:
    """The sum of several arrays of one shape, mod p."""
    if not arrays:
        raise ValueError("f_sum needs at least one array")
    total = arrays[0].copy()
    for a in arrays[1:]:
        total = f_add(total, a)
    return total


def f_mul(x: FieldArray | int, y: FieldArray) -> FieldArray:
    """x * y mod p, elementwise (x may be one element, as an int in [0, p)).

    With x = x1 2^32 + x0 and y = y1 2^32 + y0 (x1, y1 < 2^29), x y = x1 y1 2^64 +
    (x1 y0 + x0 y1) 2^32 + x0 y0, every partial product below 2^62; then 2^64 = 8 and
    m 2^32 = (m >> 29) + (m mod 2^29) 2^32 (mod p), since 2^61 = 1.
    """
    xa = np.asarray(x, dtype=np.uint64)
    x0, x1 = xa & _MASK32, xa >> _S32
    y0, y1 = y & _MASK32, y >> _S32
    total = _fold(x0 * y0)  # x0 y0 < 2^64, folded below p
    mid = x1 * y0
    mid += x0 * y1  # < 2^62
    total += mid >> _S29
    np.bitwise_and(mid, _MASK29, out=mid)
    np.left_shift(mid, _S32, out=mid)
    total += mid
    np.multiply(x1, y1, out=y1)  # x1 y1 < 2^58
    y1 <<= np.uint64(3)  # times 8
    total += y1  # < 2^63
    return _fold(total)


def from_ring(values: NDArray[np.int64]) -> FieldArray:
    """Signed ring values (int64) as field elements: v mod p.

    The int64 bits read as uint64 are v + 2^64 for negative v, and 2^64 = 8 (mod p): fold,
    then take 8 back off where v was negative (adding p - 8 keeps it unsigned)."""
    v = np.asarray(values, dtype=np.int64)
    r = _fold(v.view(np.uint64).copy())
    fix = (v >> np.int64(63)).view(np.uint64)  # all ones where v < 0
    np.bitwise_and(fix, np.uint64(P - 8), out=fix)
    r += fix  # below 2p
    return _below_p(r)


def to_signed(x: FieldArray) -> NDArray[np.int64]:
    """Field elements as the integers in [-MAX_ABS, MAX_ABS] they stand for."""
    big = x > np.uint64(MAX_ABS)
    return np.where(big, -((_P - x).astype(np.int64)), x.astype(np.int64))
