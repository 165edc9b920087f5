"""The ring Z_2^64 on int64 ndarrays, and fixed-point encoding.

Imports numpy only. Every operation is vectorised; int64 arrays wrap modulo 2^64 silently,
which is exactly ring arithmetic (numpy only warns on overflow of *scalars*, which this module
never builds).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from asyncmpc.errors import EncodingError

__all__ = [
    "FRAC_BITS",
    "RING_DTYPE",
    "RingArray",
    "as_ring",
    "decode",
    "encode",
    "max_abs_value",
    "ring_add",
    "ring_mul_public",
    "ring_sub",
    "ring_sum",
]

RingArray = NDArray[np.int64]
RING_DTYPE = np.dtype(np.int64)
FRAC_BITS = 16
"""Default number of fractional bits of the fixed-point encoding."""


def as_ring(values: ArrayLike) -> RingArray:
    """Return ``values`` as a C-contiguous int64 array (no copy if it already is one).

    Raises TypeError for arrays that are not integer-valued (floats must go through ``encode``).
    """
    arr = np.asarray(values)
    if arr.dtype == RING_DTYPE:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8:
        return np.ascontiguousarray(arr).view(np.int64)
    if arr.dtype.kind in "iub":
        return np.ascontiguousarray(arr, dtype=np.int64)
    raise TypeError(f"ring values must be integers, got dtype {arr.dtype}; use encode() for reals")


def ring_add(x: RingArray, y: RingArray, out: RingArray | None = None) -> RingArray:
    """x + y mod 2^64."""
    return np.add(x, y, out=out)


def ring_sub(x: RingArray, y: RingArray, out: RingArray | None = None) -> RingArray:
    """x - y mod 2^64."""
    return np.subtract(x, y, out=out)


def ring_mul_public(x: RingArray, k: int | RingArray) -> RingArray:
    """x * k mod 2^64 for a public integer (or int64 array) k.

    Python ints of any size are reduced mod 2^64 first, so k = 2^64 - 1 means -1.
    """
    if isinstance(k, (int, np.integer)):
        k_ring = np.array(int(k) % (1 << 64), dtype=np.uint64).view(np.int64)
        return np.multiply(x, k_ring)
    return np.multiply(x, as_ring(k))


def ring_sum(arrays: list[RingArray]) -> RingArray:
    """Sum of a non-empty list of equally shaped ring arrays, into a fresh array."""
    if not arrays:
        raise ValueError("ring_sum needs at least one array")
    total = np.array(arrays[0], dtype=np.int64, copy=True)
    for arr in arrays[1:]:
        total += arr  # in place, also for 0-d arrays
    return total


def max_abs_value(frac_bits: int = FRAC_BITS, max_terms: int = 1) -> float:
    """The largest |x| that ``encode`` accepts when up to ``max_terms`` values may be summed.

    A sum of ``max_terms`` encoded values must stay inside the signed range [-(2^63 - 1),
    2^63 - 1], so each encoded value is at most (2^63 - 1) // max_terms: the bound is the
    largest float whose scaled value x * 2^frac_bits does not exceed that.
    """
    if not 0 <= frac_bits <= 62:
        raise ValueError(f"frac_bits must be in 0..62, got {frac_bits}")
    if max_terms < 1:
        raise ValueError(f"max_terms must be >= 1, got {max_terms}")
    limit = ((1 << 63) - 1) // max_terms
    scaled = float(limit)
    if int(scaled) > limit:  # float() rounded up
        scaled = math.nextafter(scaled, 0.0)
    return scaled / 2.0**frac_bits  # exact: a power of two


_BLOCK = 1 << 15
"""Elements per block of ``encode``: its temporaries stay in cache."""
_MAGIC = 1.5 * 2.0**52
"""Adding this to a float v with |v| < 2^51 leaves round-half-even(v) in the low bits of the sum
(floats in [2^52, 2^53) are spaced exactly 1 apart): rounding and conversion in one addition."""
_MAGIC_BITS = np.array([_MAGIC]).view(np.int64)  # shape (1,): numpy warns on wrapping scalars
_MAGIC_LIMIT = 2.0**51


def encode(
    values: ArrayLike,
    frac_bits: int = FRAC_BITS,
    *,
    max_terms: int = 1,
    out: RingArray | None = None,
    minus: RingArray | None = None,
) -> RingArray:
    """Encode reals as round(x * 2^frac_bits) in Z_2^64 (rounding half to even, as ``np.rint``).

    ``max_terms`` is the largest number of encoded values that may later be added together;
    values whose sum over that many terms could overflow the ring are refused. ``out`` (an
    int64 array of the same shape) receives the result instead of a fresh array. With ``minus``
    (an int64 array of the same shape) the result is encode(x) - minus: a data owner's masked
    share in the same pass over memory.

    Raises EncodingError naming the first offending element by its index, never its value (the
    text may travel in a data owner's ``Decline``), if any element is NaN, infinite, or larger
    in magnitude than ``max_abs_value(frac_bits, max_terms)``.
    """
    x = np.ascontiguousarray(values, dtype=np.float64)
    bound = max_abs_value(frac_bits, max_terms)
    # min and max see every NaN (it propagates) and the extremes, in two passes with no temporaries
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if not (-bound <= lo and hi <= bound):
        finite = np.isfinite(x)
        if not finite.all():
            idx = _first_index(~finite)
            raise EncodingError(f"cannot encode element {idx}: it is not finite (NaN or infinite)")
        idx = _first_index(np.abs(x) > bound)
        raise EncodingError(
            f"cannot encode element {idx}: its magnitude exceeds {bound:.6g}, the largest value "
            f"whose sum over {max_terms} term(s) fits the ring with {frac_bits} fractional bits"
        )
    for name, arr in (("out", out), ("minus", minus)):
        if arr is not None and (arr.shape != x.shape or arr.dtype != np.int64 or not arr.flags.c_contiguous):
            raise ValueError(f"{name} must be a C-contiguous int64 array of shape {x.shape}")
    result = np.empty(x.shape, dtype=np.int64) if out is None else out
    scale = 2.0**frac_bits  # multiplying by it is exact
    fast = max(-lo, hi) * scale < _MAGIC_LIMIT
    xs, rs = x.reshape(-1), result.reshape(-1)
    ms = None if minus is None else minus.reshape(-1)
    tmp = np.empty(min(xs.size, _BLOCK), dtype=np.float64)
    for start in range(0, xs.size, _BLOCK):
        stop = min(xs.size, start + _BLOCK)
        t, r = tmp[: stop - start], rs[start:stop]
        np.multiply(xs[start:stop], scale, out=t)
        if fast:
            np.add(t, _MAGIC, out=t)
            np.subtract(t.view(np.int64), _MAGIC_BITS, out=r)
        else:
            np.rint(t, out=t)
            np.copyto(r, t, casting="unsafe")
        if ms is not None:
            np.subtract(r, ms[start:stop], out=r)
    return result


def decode(values: RingArray, frac_bits: int = FRAC_BITS) -> NDArray[np.float64]:
    """Decode ring elements (read as signed) back to reals: x / 2^frac_bits (exact scaling)."""
    return np.multiply(np.asarray(values, dtype=np.int64), 2.0**-frac_bits)


def _first_index(mask: NDArray[np.bool_]) -> tuple[int, ...] | int:
    flat = int(np.flatnonzero(mask)[0])
    if mask.ndim <= 1:
        return flat
    return tuple(int(i) for i in np.unravel_index(flat, mask.shape))
