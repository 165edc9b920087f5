"""Layer 2: information-theoretic MACs over F_p for sums of ring values (pure; ring, field, prf).

The building block for resolving a dispute between two servers: with a secret key alpha (a
field element the model owner draws and gives only to the data owners), each owner shares
beside its ring vector x a field vector t = alpha * x (``authenticate``); servers add both
kinds of shares; the model owner reconstructs the field sum T and accepts a candidate ring sum
z only if alpha * z = T elementwise and z is in range (``verify``). Summing keeps the relation
(it is linear), so the check covers the whole aggregate. A server that changes z by d and T by
e, with d_i != 0 for some element i, passes only if alpha = e_i / d_i: one of the p - 1 keys
it cannot see, probability at most 1 / (p - 1) ~ 2^-61 per round, however many elements.

The range check matters: z and z + k p agree mod p, so only candidates with |z| <= MAX_ABS
(p / 2) are considered, and a sum of honest contributions must stay within it (encoding
bounds it by ``max_owners``, far below). ``pick`` tries candidate reconstructions (say, the
disputed component taken from either of its two holders) and returns the one that verifies.
See ``field`` for why the check is not done in Z_2^64 (SPDZ2k, CRYPTO 2018).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from asyncmpc.field import MAX_ABS, FieldArray, P, f_mul, f_sub, f_sum, from_ring, reduce_words
from asyncmpc.prf import RandomBytes, expand, new_seed
from asyncmpc.ring import RingArray

__all__ = ["FShare", "authenticate", "new_mac_key", "pick", "reconstruct_field", "share_field", "verify"]


def new_mac_key(random_bytes: RandomBytes = os.urandom) -> int:
    """A uniform non-zero field element from a secure source (rejection sampling)."""
    while True:
        alpha = int.from_bytes(random_bytes(8), "little") & P
        if 0 < alpha < P:
            return alpha


def authenticate(x: RingArray, alpha: int) -> FieldArray:
    """t = alpha * x in F_p, for a ring vector x of signed values."""
    return f_mul(alpha, from_ring(x))


def verify(z: RingArray, alpha: int, tags: FieldArray) -> bool:
    """Whether the ring sum ``z`` is the one the field sum of tags ``tags`` authenticates."""
    if z.shape != tags.shape:
        return False
    if z.size and int(np.abs(np.clip(z, -MAX_ABS - 1, MAX_ABS + 1)).max()) > MAX_ABS:
        return False
    return bool(np.array_equal(authenticate(z, alpha), tags))


def pick(candidates: list[RingArray], alpha: int, tags: FieldArray) -> int | None:
    """The index of the first candidate that verifies, or None."""
    for i, z in enumerate(candidates):
        if verify(z, alpha, tags):
            return i
    return None


@dataclass(frozen=True, slots=True)
class FShare:
    """Server ``server``'s replicated share of a field vector: a = x_server, b = x_{server+1}."""

    server: int
    a: FieldArray
    b: FieldArray

    def __repr__(self) -> str:  # never print share values
        return f"FShare(server={self.server}, shape={self.a.shape})"


def share_field(x: FieldArray, random_bytes: RandomBytes = os.urandom) -> tuple[FShare, FShare, FShare]:
    """Replicated 2-of-3 shares of a field vector: x0, x1 uniform (from fresh seeds), x2 = x - x0 - x1."""
    x0 = reduce_words(expand(new_seed(random_bytes), x.shape))
    x1 = reduce_words(expand(new_seed(random_bytes), x.shape))
    x2 = f_sub(f_sub(x, x0), x1)
    return (FShare(0, x0, x1), FShare(1, x1, x2), FShare(2, x2, x0))


def reconstruct_field(shares: list[FShare]) -> FieldArray:
    """x from the shares of any two (or three) distinct servers."""
    comps: dict[int, FieldArray] = {}
    for s in shares:
        comps.setdefault(s.server, s.a)
        comps.setdefault((s.server + 1) % 3, s.b)
    if len({s.server for s in shares}) < 2 or len(comps) != 3:
        raise ValueError("need the shares of two distinct servers")
    return f_sum([comps[0], comps[1], comps[2]])
