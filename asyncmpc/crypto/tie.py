"""Tying an owner's ring vector to its field vector (pure; docs/normcheck.md, item 4).

Every owner shares its vector twice, x in Z_2^64 (for the sum) and x_F in F_q (for the norm
proof, ``fieldnorm``). Honest owners share the same integers. Two checks tie them:

- **The aggregate** (every round): the servers release the field sum Z_F beside the ring sum Z
  of the same contributors; ``same_integers`` accepts the round only if their centred values
  are the same integers. Then Z is a sum of field vectors each proven within the bound,
  whatever any owner put in its ring shares, and Z_F says nothing Z does not.
- **A dispute** (only when they differ): for K_T ternary projections r_j drawn after the
  shares (``projections``), every owner's servers open u_j = <r_j, x> + m_j (mod 2^64) and
  v_j = <r_j, x_F> + m'_j (mod q), where m, m' are masks the owner shared with its input (the
  same integers, uniform in [T, T + M)); an owner whose u_j and v_j differ as integers is the
  one whose two sharings differ (``consistent``).

Soundness of the dispute check: let x~ and x_F's centred lift differ at coordinate k, and fix
every other entry of r_j. The three values of r_k give pairs (u, v); if two of them both match,
their difference D (an integer below q in magnitude) satisfies D = x~_k mod 2^64 and
D = x_F,k mod q, and with |D| < q/2 that makes x~_k = x_F,k; so |D| >= q/2, and then the third
cannot match too (its values would leave [0, q)). A projection passes with probability at most
3/4 (r_k = 0 and one sign), so K_T = 100 projections catch the liar except with (3/4)^100 <
2^-41. Hiding: an honest owner's u_j is y_j + m_j with y_j in [-T, T] and m_j uniform over M
values, statistically 2T / M from a mask alone; M = 2^41 T keeps that below 2^-40 while
T + M + T < q / 2, that is for T up to about 2^21.
"""

from __future__ import annotations

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.goldilocks import FieldArray, Q
from asyncmpc.crypto.projections import project, project_field
from asyncmpc.crypto.ring import RingArray

__all__ = ["TIE_K", "consistent", "mask_range", "masked_ring", "masked_field", "same_integers"]

TIE_K = 100
"""Projections of a dispute's tie: (3/4)^100 < 2^-41."""


def same_integers(z: RingArray, z_field: FieldArray) -> bool:
    """Whether the ring sum and the field sum are the same integers (centred), elementwise."""
    if z.shape != z_field.shape:
        return False
    signed = z.astype(object)
    lifted = np.array([int(v) - Q if int(v) > Q // 2 else int(v) for v in z_field.reshape(-1)], dtype=object)
    return bool(np.array_equal(signed.reshape(-1), lifted))


def mask_range(threshold: int) -> tuple[int, int]:
    """[low, high): where an owner's masks are drawn for projections within [-T, T], so that a
    masked value hides its projection to 2^-40 and fits both the ring and the field."""
    low, high = threshold, threshold + (threshold << 41)
    if high + threshold >= Q // 2:
        raise ValueError(f"projections up to {threshold} cannot be masked within the field")
    return low, high


def masked_ring(coin: bytes, x_part: RingArray, mask_part: RingArray) -> RingArray:
    """A server's part of u = <r_j, x> + m (mod 2^64), j < TIE_K, from one additive part."""
    out: RingArray = project(coin, TIE_K, [x_part])[0] + mask_part
    return out


def masked_field(coin: bytes, x_part: FieldArray, mask_part: FieldArray) -> FieldArray:
    """A server's part of v = <r_j, x_F> + m' (mod q), j < TIE_K, from one additive part."""
    return gf.add(project_field(coin, TIE_K, [x_part])[0], mask_part)


def consistent(u: RingArray, v: FieldArray) -> bool:
    """Whether the opened u (ring, read unsigned) and v (field) are the same integers."""
    return [int(a) for a in u.view(np.uint64).tolist()] == [int(b) for b in v.tolist()]
