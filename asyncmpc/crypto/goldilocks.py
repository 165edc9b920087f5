"""The prime field F_q, q = 2^64 - 2^32 + 1 ("Goldilocks"), vectorised over numpy uint64 (pure).

The norm check's proof needs random challenges from a large field (docs/normcheck.md); this one
holds 64-bit words almost whole, so a ring element's centred value (|x~| < 2^63 < q / 2) is an
element exactly, and 2^64 = 2^32 - 1, 2^96 = -1 (mod q) make reduction cheap: a 128-bit
product hi * 2^64 + lo reduces to lo - (hi >> 32) + (hi mod 2^32)(2^32 - 1), the reduction of
Plonky2 and of Prio3's Field64 (draft-irtf-cfrg-vdaf, section 6.1). Elements are uint64 arrays
with values in [0, q); every function takes and returns such arrays (or Python ints for
scalars, where the sizes are small).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.prf import expand, nonce_for
from asyncmpc.crypto.ring import ring_sum

__all__ = [
    "Q",
    "FieldArray",
    "add",
    "centred",
    "combine",
    "from_seed",
    "from_signed",
    "mul",
    "neg",
    "sub",
    "to_signed",
    "total",
    "uniform",
]

FieldArray = NDArray[np.uint64]
Q = (1 << 64) - (1 << 32) + 1
_Q = np.uint64(Q)
_EPSILON = np.uint64((1 << 32) - 1)
"""2^64 mod q."""
_LOW32 = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


def _canonical(x: FieldArray) -> FieldArray:
    """x mod q for x in [0, 2^64)."""
    return np.where(x >= _Q, x - _Q, x)


def add(a: FieldArray, b: FieldArray) -> FieldArray:
    s = a + b  # wraps when a + b >= 2^64; then the true sum is s + 2^64 = s + (2^32 - 1) mod q
    s = np.where(s < a, s + _EPSILON, s)
    return _canonical(s)


def neg(a: FieldArray) -> FieldArray:
    return np.where(a == 0, a, _Q - a)


def sub(a: FieldArray, b: FieldArray) -> FieldArray:
    return add(a, neg(b))


def mul(a: FieldArray, b: FieldArray) -> FieldArray:
    """a * b mod q, elementwise, for a and b in [0, q)."""
    a0, a1 = a & _LOW32, a >> _32
    b0, b1 = b & _LOW32, b >> _32
    ll, hh = a0 * b0, a1 * b1
    mid = a0 * b1
    cross = a1 * b0
    mid = mid + cross
    carry_mid = (mid < cross).astype(np.uint64)  # mid wrapped past 2^64: 2^96 more in all
    lo = ll + (mid << _32)
    carry_lo = (lo < ll).astype(np.uint64)
    hi = hh + (mid >> _32) + (carry_mid << _32) + carry_lo  # < 2^64, since a * b < 2^128
    return _reduce(hi, lo)


def _reduce(hi: FieldArray, lo: FieldArray) -> FieldArray:
    """(hi * 2^64 + lo) mod q, with 2^64 = 2^32 - 1 and 2^96 = -1 (mod q)."""
    hi_hi, hi_lo = hi >> _32, hi & _LOW32
    t0 = lo - hi_hi
    t0 = np.where(lo < hi_hi, t0 - _EPSILON, t0)  # borrowed 2^64 = 2^32 - 1
    t1 = hi_lo * _EPSILON
    r = t0 + t1
    r = np.where(r < t1, r + _EPSILON, r)  # carried 2^64
    return _canonical(r)


def total(a: FieldArray) -> FieldArray:
    """The sum mod q along the last axis (pairwise, so every step is one vectorised add)."""
    while a.shape[-1] > 1:
        if a.shape[-1] % 2:
            a = np.concatenate([a, np.zeros((*a.shape[:-1], 1), dtype=np.uint64)], axis=-1)
        a = add(a[..., 0::2], a[..., 1::2])
    return a[..., 0]


def from_signed(x: NDArray[np.int64]) -> FieldArray:
    """The field elements of signed 64-bit integers (x~ mod q: exact, since |x~| <= 2^63 < q)."""
    u = x.view(np.uint64)
    # a negative x is the word 2^64 + x, and x = word - 2^64 = word - (2^32 - 1) (mod q)
    return np.where(x < 0, add(_canonical(u), neg(np.full_like(u, _EPSILON))), _canonical(u))


def centred(a: FieldArray) -> NDArray[np.object_]:
    """The elements as Python integers in (-q/2, q/2) (for checks and tests; not vectorised)."""
    return np.array([int(v) - Q if int(v) > Q // 2 else int(v) for v in a.reshape(-1)], dtype=object).reshape(a.shape)


def _below_q(words: NDArray[np.uint64]) -> FieldArray:
    return words[words < _Q]


def uniform(n: int, random_bytes: Callable[[int], bytes]) -> FieldArray:
    """n elements uniform in F_q from ``random_bytes`` (a secure source), by rejection: a 64-bit
    word is at least q with probability 2^-32, and is drawn again (reducing it mod q would
    skew shares by 2^-32 per element)."""
    out = _below_q(np.frombuffer(random_bytes(8 * n), dtype=np.uint64))
    while out.size < n:
        out = np.concatenate([out, _below_q(np.frombuffer(random_bytes(8 * (n - out.size)), dtype=np.uint64))])
    return out[:n].copy()


def from_seed(seed: bytes, n: int, label: str) -> FieldArray:
    """n elements uniform in F_q from ``seed`` (a keystream per ``label``, by rejection): the
    same on every machine, for public randomness derived by hashing."""
    out: FieldArray = np.zeros(0, dtype=np.uint64)
    attempt = 0
    while out.size < n:
        words = expand(seed, n + 8, nonce_for(f"{label}:{attempt}")).view(np.uint64)
        out = np.concatenate([out, _below_q(words)])
        attempt += 1
    return out[:n].copy()


def to_signed(a: FieldArray) -> NDArray[np.int64]:
    """The centred integers of elements, as int64 (exact for |value| < 2^63: every sum the
    norm check releases is far below)."""
    u = np.asarray(a, dtype=np.uint64)
    return np.where(u > np.uint64(Q // 2), u + _EPSILON, u).view(np.int64)


def squared_norm(a: FieldArray) -> int:
    """The exact sum of the squares of the elements' centred integers (vectorised while every
    element is below 2^32 in size, as any vector within a norm bound is)."""
    magnitude = np.abs(to_signed(a).reshape(-1)).view(np.uint64)  # |-2^63| stays 2^63 as a word
    if magnitude.size and int(magnitude.max()) >= 1 << 32:
        return sum(int(v) ** 2 for v in to_signed(a).reshape(-1).tolist())
    squares = magnitude * magnitude  # < 2^64
    return (int(np.sum(squares >> _32, dtype=np.uint64)) << 32) + int(np.sum(squares & _LOW32, dtype=np.uint64))


def combine(parts: list[NDArray[np.int64]], field: bool) -> NDArray[np.int64]:
    """The sum of share components (int64 words): in Z_2^64, or (``field``) in F_q, centred."""
    if not field:
        return ring_sum(parts)
    acc = parts[0].view(np.uint64)
    for p in parts[1:]:
        acc = add(acc, p.view(np.uint64))
    return to_signed(acc)
