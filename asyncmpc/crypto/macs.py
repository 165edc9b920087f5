"""A one-time information-theoretic MAC over F_p for sums of ring vectors (pure).

The building block for resolving a dispute between two servers. The model owner draws a MAC key
(``MacKey``: 16 bytes from a secure source) and gives it only to the data owners; it stands for
a secret vector r, uniform in F_p^d (p = 2^61 - 1). An owner with ring vector x (signed fixed
point) shares, beside x, the single field element t = <r, x> mod p (``tag``); servers add both
kinds of shares; the model owner reconstructs the sums z and T and accepts z only if
<r, z> = T in F_p and z is in range (``verify``). The tag is linear, so the check covers the
whole aggregate.

Soundness: a server that changes z by d (d_i != 0 for some i) and T by e passes only if
<r, d> = e (mod p). With z and z + d both within [-MAX_ABS, MAX_ABS], every d_i lies strictly
between -p and p, so d_i != 0 is invertible mod p, and over the secret uniform r_i, <r, d>
takes every value with probability 1/p: the check passes with probability at most 1/p ~ 2^-61
per round, however many elements. This is the multilinear universal hash used as a one-time
MAC (Wegman, Carter, "New hash functions and their use in authentication and set equality",
JCSS 22(3), 1981), a fresh key per round; SPDZ (Damgard, Pastro, Smart, Zakarias, CRYPTO 2012)
authenticates shared values the same linear way. The range check matters: z and z + k p agree
mod p, so only candidates with |z| <= MAX_ABS (p / 2) are taken, and an honest sum must stay
within it (a MAC round encodes with headroom for that). See ``field`` for why the check is not
done in Z_2^64 (SPDZ2k, CRYPTO 2018).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from asyncmpc.crypto.field import MAX_ABS, FieldArray, P, reduce_words
from asyncmpc.crypto.prf import BLOCK, NONCE_BYTES, SEED_BYTES, RandomBytes, expand, keystream_blocks, new_seed
from asyncmpc.crypto.ring import RingArray

__all__ = ["FIELD_MAC_KEY_BYTES", "MacKey", "in_range", "project", "tag", "verify"]

FIELD_MAC_KEY_BYTES = SEED_BYTES
_PROJECTION_NONCE = b"\x04" + bytes(NONCE_BYTES - 1)
_LIMB = 16
_R_MASK = np.int64((1 << 61) - 1)


@dataclass(frozen=True, slots=True)
class MacKey:
    """A MAC key: 16 secret bytes that stand for the vector r (of any length), derived by
    AES-CTR; used for one round only."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != FIELD_MAC_KEY_BYTES:
            raise ValueError(f"a MAC key is {FIELD_MAC_KEY_BYTES} bytes, got {len(self.key)}")

    @classmethod
    def new(cls, random_bytes: RandomBytes = os.urandom) -> MacKey:
        return cls(new_seed(random_bytes))

    def projection(self, n: int) -> FieldArray:
        """r: n field elements, uniform up to 2^-61 (``field.reduce_words``)."""
        return reduce_words(expand(self.key, n, _PROJECTION_NONCE))

    def __repr__(self) -> str:  # never print key material
        return "MacKey(<hidden>)"


def in_range(z: RingArray) -> bool:
    """Whether every element of ``z`` lies in [-MAX_ABS, MAX_ABS]."""
    return not z.size or (int(z.min()) >= -MAX_ABS and int(z.max()) <= MAX_ABS)


def project(x: RingArray, r: FieldArray) -> int:
    """<r, x> mod p, exactly, for ring values within [-MAX_ABS, MAX_ABS] (signed integers) and
    field elements r (any values below 2^61: r = p counts as 0)."""
    flat = x.reshape(-1)
    rv = r.reshape(-1)
    return sum(_dot(flat[lo : lo + BLOCK], rv[lo : lo + BLOCK]) for lo in range(0, flat.size, BLOCK)) % P


def _dot(x: RingArray, r: np.ndarray) -> int:
    """<r, x> over one block of at most ``prf.BLOCK`` (2^15) elements, as an exact integer.

    x mod p and r (both below 2^61) are read as four 16-bit limbs each, a view of their
    little-endian words; a product of two limbs is below 2^32 and a sum of 2^15 such products
    below 2^47, so one float64 matrix product (BLAS) of the (4 x n) and (n x 4) limb matrices
    is exact: every partial sum is an integer below 2^53. The limbs go to per-thread scratch
    buffers: fresh megabyte arrays on every call cost more in page faults than the product.
    """
    n = x.size
    u, xs, rs = _SCRATCH.u[:n], _SCRATCH.x[:n], _SCRATCH.r[:n]
    np.right_shift(x, 63, out=u)
    np.bitwise_and(u, np.int64(P), out=u)
    np.add(u, x, out=u)  # x mod p, for |x| < p
    np.copyto(xs, _limbs(u), casting="unsafe")
    np.copyto(rs, _limbs(r), casting="unsafe")
    m = xs.T @ rs
    return sum(int(m[i, j]) << (_LIMB * (i + j)) for i in range(4) for j in range(4))


def _limbs(v: np.ndarray) -> np.ndarray:
    """The (n x 4) uint16 view of the 16-bit limbs of n words, least significant first."""
    return v.view(np.uint64).astype("<u8", copy=False).view("<u2").reshape(-1, 4)


class _Scratch(threading.local):
    def __init__(self) -> None:
        self.u = np.empty(BLOCK, dtype=np.int64)
        self.x = np.empty((BLOCK, 4), dtype=np.float64)
        self.r = np.empty((BLOCK, 4), dtype=np.float64)


_SCRATCH = _Scratch()


def tag(x: RingArray, key: MacKey) -> int:
    """t = <r, x> in F_p. Raises ValueError if x is out of range."""
    if not in_range(x):
        raise ValueError("a MAC covers values within [-MAX_ABS, MAX_ABS] only")
    flat = x.reshape(-1)
    total = 0
    for lo, hi, words in keystream_blocks([key.key], flat.size, nonce=_PROJECTION_NONCE):
        np.bitwise_and(words, _R_MASK, out=words)  # the words' low 61 bits, as in ``projection``
        total += _dot(flat[lo:hi], words)
    return total % P


def verify(z: RingArray, key: MacKey, t: int) -> bool:
    """Whether the ring sum ``z`` is the one the field sum of tags ``t`` authenticates."""
    return in_range(z) and tag(z, key) == t % P
