"""Layer 2: an information-theoretic MAC over F_p for sums of ring vectors (pure; field, prf).

The building block for resolving a dispute between two servers. The model owner draws a MAC key
(``MacKey``: 16 bytes from a secure source) and gives it only to the data owners; it stands for
a secret alpha in F_p \\ {0} and a secret vector r in F_p^d. An owner with ring vector x (signed
fixed point) shares, beside x, the single field element t = alpha * <r, x> (``tag``); servers
add both kinds of shares; the model owner reconstructs the sums z and T and accepts z only if
alpha * <r, z> = T in F_p and z is in range (``verify``). Both sides are linear, so the check
covers the whole aggregate.

Soundness: a server that changes z by d (d_i != 0 for some i) and T by e passes only if
alpha * <r, d> = e. With z and z + d both within [-MAX_ABS, MAX_ABS], every d_i lies strictly
between -p and p, so d_i != 0 is invertible mod p and <r, d> is uniform in F_p over the secret
uniform r; with alpha uniform and non-zero, the check passes with probability at most 1/p
~ 2^-61 per round, however many elements. This is the MAC of SPDZ (Damgard, Pastro, Smart,
Zakarias, CRYPTO 2012) applied to a random projection of the vector (a universal hash, as in
Carter-Wegman MACs), so a tag is one field element instead of one per element. The range check
matters: z and z + k p agree mod p, so only candidates with |z| <= MAX_ABS (p / 2) are taken,
and an honest sum must stay within it (a MAC round encodes with headroom for that). See
``field`` for why the check is not done in Z_2^64 (SPDZ2k, CRYPTO 2018).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from asyncmpc.field import MAX_ABS, FieldArray, P, reduce_words
from asyncmpc.prf import NONCE_BYTES, SEED_BYTES, RandomBytes, expand, keystream_blocks, new_seed
from asyncmpc.ring import RingArray

__all__ = ["FIELD_MAC_KEY_BYTES", "MacKey", "in_range", "project", "tag", "verify"]

FIELD_MAC_KEY_BYTES = SEED_BYTES
_ALPHA_NONCE = b"\x03" + bytes(NONCE_BYTES - 1)
_PROJECTION_NONCE = b"\x04" + bytes(NONCE_BYTES - 1)
_LIMB = 21
_LIMB_MASK = np.int64((1 << _LIMB) - 1)
_CHUNK = 1 << 20
"""Elements per exact partial dot product: 2^20 terms below 2^42 each stay below 2^62."""


@dataclass(frozen=True, slots=True)
class MacKey:
    """A MAC key: 16 secret bytes that stand for alpha (a non-zero field element) and the
    projection vector r (a field vector of any length), both derived by AES-CTR."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != FIELD_MAC_KEY_BYTES:
            raise ValueError(f"a MAC key is {FIELD_MAC_KEY_BYTES} bytes, got {len(self.key)}")

    @classmethod
    def new(cls, random_bytes: RandomBytes = os.urandom) -> MacKey:
        return cls(new_seed(random_bytes))

    @property
    def alpha(self) -> int:
        """Uniform in F_p \\ {0}: the first word of its stream in range (rejection sampling)."""
        for _, _, block in keystream_blocks([self.key], 64, nonce=_ALPHA_NONCE):
            for word in block.view(np.uint64) & np.uint64(P):
                if 0 < int(word) < P:
                    return int(word)
        raise AssertionError("64 words of a keystream all out of range")  # probability 2^-3900

    def projection(self, n: int) -> FieldArray:
        """r: n field elements, uniform up to 2^-61 (``field.reduce_words``)."""
        return reduce_words(expand(self.key, n, _PROJECTION_NONCE))

    def __repr__(self) -> str:  # never print key material
        return "MacKey(<hidden>)"


def in_range(z: RingArray) -> bool:
    """Whether every element of ``z`` lies in [-MAX_ABS, MAX_ABS]."""
    return not z.size or (int(z.min()) >= -MAX_ABS and int(z.max()) <= MAX_ABS)


def project(x: RingArray, r: FieldArray) -> int:
    """<r, x> mod p, exactly, for ring values within [-MAX_ABS, MAX_ABS] (signed integers).

    x mod p and r are split into three 21-bit limbs; each of the nine limb products summed
    over 2^20 elements stays below 2^62, so numpy's int64 dot product is exact.
    """
    flat = x.reshape(-1)
    u = flat + ((flat >> np.int64(63)) & np.int64(P))  # x mod p, for |x| < p
    rv = r.reshape(-1).view(np.int64)
    total = 0
    for lo in range(0, flat.size, _CHUNK):
        xs = _limbs(u[lo : lo + _CHUNK])
        rs = _limbs(rv[lo : lo + _CHUNK])
        for i, a in enumerate(xs):
            for j, b in enumerate(rs):
                total += int(np.dot(a, b)) << (_LIMB * (i + j))
    return total % P


def _limbs(v: np.ndarray) -> list[np.ndarray]:
    return [v & _LIMB_MASK, (v >> np.int64(_LIMB)) & _LIMB_MASK, v >> np.int64(2 * _LIMB)]


def tag(x: RingArray, key: MacKey) -> int:
    """t = alpha * <r, x> in F_p. Raises ValueError if x is out of range."""
    if not in_range(x):
        raise ValueError("a MAC covers values within [-MAX_ABS, MAX_ABS] only")
    return key.alpha * project(x, key.projection(x.size)) % P


def verify(z: RingArray, key: MacKey, t: int) -> bool:
    """Whether the ring sum ``z`` is the one the field sum of tags ``t`` authenticates."""
    return in_range(z) and tag(z, key) == t % P
