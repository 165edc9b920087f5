"""Ring Z_2^64 and fixed-point encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asyncmpc.crypto.ring import as_ring, decode, encode, max_abs_value, ring_add, ring_mul_public, ring_sub, ring_sum
from asyncmpc.errors import EncodingError

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


def _reference_encode(x: np.ndarray, frac_bits: int) -> list[int]:
    """round(x * 2^f), halves to even, in exact integer arithmetic (Python's round is half-even)."""
    from fractions import Fraction

    return [round(Fraction(float(v)) * 2**frac_bits) % MOD for v in x.ravel()]


# halves, values around 2^51 / 2^f (where encode switches from one addition to np.rint) and the
# bound itself: encode must agree with exact rounding everywhere
_tricky = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-(1 << 20), 1 << 20).map(lambda k: k + 0.5),
    st.integers(-(1 << 20), 1 << 20).map(lambda k: k * 2.0**-16 + 2.0**-17),
    st.sampled_from([2.0**35, -(2.0**35), 2.0**35 - 2.0**-17, 2.0**35 + 2.0**-16, 3.0 * 2.0**34 + 0.5]),
)


@given(
    st.integers(0, 40),
    hnp.arrays(np.float64, st.integers(1, 64), elements=_tricky),
    st.integers(1, 70_000),
    st.integers(0, 2**32),
)
def test_encode_rounds_exactly_and_subtracts_minus(frac_bits: int, pattern: np.ndarray, n: int, seed: int) -> None:
    # the pattern repeated to n elements: several of encode's blocks, not only the first
    bound = max_abs_value(frac_bits, 1)
    pattern = np.clip(pattern, -bound, bound)
    x = np.resize(pattern, n)
    expected = np.resize(np.array(_reference_encode(pattern, frac_bits), dtype=np.uint64), n)
    assert np.array_equal(encode(x, frac_bits).view(np.uint64), expected)
    info = np.iinfo(np.int64)
    minus = np.random.default_rng(seed).integers(info.min, info.max, n, dtype=np.int64, endpoint=True)
    out = np.empty(n, dtype=np.int64)
    assert encode(x, frac_bits, out=out, minus=minus) is out
    assert np.array_equal(out.view(np.uint64), expected - minus.view(np.uint64))  # uint64 arrays wrap


def test_encode_refuses_nan_and_inf_naming_the_element() -> None:
    with pytest.raises(EncodingError, match=r"element 2: it is not finite \(NaN or infinite\)$"):
        encode([0.0, 1.0, float("nan")])
    with pytest.raises(EncodingError, match=r"element \(1, 0\): it is not finite") as info:
        encode([[0.0, 1.0], [float("-inf"), 2.0]])
    assert "-inf" not in str(info.value)  # the index, never the value


def test_encode_refuses_values_whose_sum_could_overflow() -> None:
    limit = max_abs_value(16, 1000)
    encode([limit], 16, max_terms=1000)
    with pytest.raises(EncodingError, match=r"element 1: its magnitude exceeds .* over 1000 term") as info:
        encode([0.0, limit * 1.0001], 16, max_terms=1000)
    assert repr(limit * 1.0001) not in str(info.value)  # the index, never the value
    # at the bound, a sum over max_terms values stays inside the signed range
    worst = ring_mul_public(encode([limit], 16, max_terms=1000), 1000)
    assert decode(worst, 16)[0] > 0


def test_as_ring_accepts_integers_and_refuses_floats() -> None:
    assert as_ring(np.array([1, 2], dtype=np.int32)).dtype == np.int64
    u = np.array([MOD - 1], dtype=np.uint64)
    assert as_ring(u)[0] == -1
    with pytest.raises(TypeError, match="use encode"):
        as_ring(np.array([1.5]))
