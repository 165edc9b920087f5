"""Ring Z_2^64 and fixed-point encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asyncmpc.errors import EncodingError
from asyncmpc.ring import as_ring, decode, encode, max_abs_value, ring_add, ring_mul_public, ring_sub, ring_sum

MOD = 1 << 64
int64s = hnp.arrays(np.int64, st.integers(1, 64), elements=st.integers(-(1 << 63), (1 << 63) - 1))


def to_int(a: np.ndarray) -> list[int]:
    return [int(v) % MOD for v in a]


@given(int64s, st.data())
def test_add_sub_mul_wrap_modulo_2_64(x: np.ndarray, data: st.DataObject) -> None:
    y = data.draw(hnp.arrays(np.int64, x.shape, elements=st.integers(-(1 << 63), (1 << 63) - 1)))
    k = data.draw(st.integers(-(1 << 70), 1 << 70))
    assert to_int(ring_add(x, y)) == [(a + b) % MOD for a, b in zip(to_int(x), to_int(y), strict=True)]
    assert to_int(ring_sub(x, y)) == [(a - b) % MOD for a, b in zip(to_int(x), to_int(y), strict=True)]
    assert to_int(ring_mul_public(x, k)) == [(a * k) % MOD for a in to_int(x)]
    assert to_int(ring_sum([x, y, x])) == [(2 * a + b) % MOD for a, b in zip(to_int(x), to_int(y), strict=True)]


@given(
    st.integers(1, 30),
    hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e6, 1e6, allow_nan=False)),
)
def test_encode_decode_round_trip_within_half_ulp(frac_bits: int, x: np.ndarray) -> None:
    bound = max_abs_value(frac_bits, 1)
    x = np.clip(x, -bound, bound)
    back = decode(encode(x, frac_bits), frac_bits)
    assert np.all(np.abs(back - x) <= 2.0 ** (-frac_bits - 1) + np.abs(x) * 2**-52)


@given(hnp.arrays(np.float64, st.integers(1, 20), elements=st.floats(-1e3, 1e3)), st.integers(2, 100))
def test_sum_of_encodings_decodes_to_sum_within_bound(x: np.ndarray, n: int) -> None:
    enc = encode(x, 16, max_terms=n)
    total = ring_mul_public(enc, n)
    assert np.all(np.abs(decode(total, 16) - n * x) <= n * 2.0**-17 + 1e-9)


def test_encode_refuses_nan_and_inf_naming_the_element() -> None:
    with pytest.raises(EncodingError, match=r"element 2: value nan is not finite"):
        encode([0.0, 1.0, float("nan")])
    with pytest.raises(EncodingError, match=r"element \(1, 0\): value -inf"):
        encode([[0.0, 1.0], [float("-inf"), 2.0]])


def test_encode_refuses_values_whose_sum_could_overflow() -> None:
    limit = max_abs_value(16, 1000)
    encode([limit], 16, max_terms=1000)
    with pytest.raises(EncodingError, match=r"element 1: .*exceeds .* over 1000 term"):
        encode([0.0, limit * 1.0001], 16, max_terms=1000)
    # at the bound, a sum over max_terms values stays inside the signed range
    worst = ring_mul_public(encode([limit], 16, max_terms=1000), 1000)
    assert decode(worst, 16)[0] > 0


def test_as_ring_accepts_integers_and_refuses_floats() -> None:
    assert as_ring(np.array([1, 2], dtype=np.int32)).dtype == np.int64
    u = np.array([MOD - 1], dtype=np.uint64)
    assert as_ring(u)[0] == -1
    with pytest.raises(TypeError, match="use encode"):
        as_ring(np.array([1.5]))
