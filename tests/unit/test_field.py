"""F_p arithmetic (p = 2^61 - 1) and field MACs over sums of ring values, against Python integers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.field import MAX_ABS, P, as_field, f_add, f_mul, f_neg, f_sub, from_ring, reduce_words, to_signed
from asyncmpc.macs import authenticate, new_mac_key, pick, reconstruct_field, share_field, verify

elements = st.lists(st.integers(0, P - 1), min_size=1, max_size=40)
signed = st.lists(st.integers(-MAX_ABS, MAX_ABS), min_size=1, max_size=40)
ring = st.integers(-(1 << 63), (1 << 63) - 1)


@given(elements, elements)
def test_field_operations_match_python_integers(xs: list[int], ys: list[int]) -> None:
    n = min(len(xs), len(ys))
    x, y = as_field(xs[:n]), as_field(ys[:n])
    assert [int(v) for v in f_add(x, y)] == [(a + b) % P for a, b in zip(xs, ys, strict=False)]
    assert [int(v) for v in f_sub(x, y)] == [(a - b) % P for a, b in zip(xs, ys, strict=False)]
    assert [int(v) for v in f_mul(x, y)] == [(a * b) % P for a, b in zip(xs, ys, strict=False)]
    assert [int(v) for v in f_neg(x)] == [(-a) % P for a in xs[:n]]


@given(st.integers(0, P - 1), elements)
def test_a_scalar_times_a_vector(k: int, xs: list[int]) -> None:
    assert [int(v) for v in f_mul(k, as_field(xs))] == [(k * a) % P for a in xs]


def test_the_extremes_of_the_limb_products() -> None:
    edge = [0, 1, 2, P - 1, P - 2, (1 << 32) - 1, 1 << 32, (1 << 60) + 12345, (1 << 61) - 2]
    x = as_field([a for a in edge for _ in edge])
    y = as_field([b for _ in edge for b in edge])
    assert [int(v) for v in f_mul(x, y)] == [(a * b) % P for a in edge for b in edge]


@given(st.lists(ring, min_size=1, max_size=40))
def test_ring_values_enter_the_field_mod_p(vs: list[int]) -> None:
    assert [int(v) for v in from_ring(np.array(vs, dtype=np.int64))] == [v % P for v in vs]


@given(signed)
def test_signed_values_come_back(vs: list[int]) -> None:
    assert [int(v) for v in to_signed(from_ring(np.array(vs, dtype=np.int64)))] == vs


def test_keystream_words_become_elements_below_p() -> None:
    words = np.array([5, P, P + 6, (1 << 64) - 1, 1 << 61, P - 1], dtype=np.uint64)
    assert [int(v) for v in reduce_words(words)] == [5, 0, 5, 0, 0, P - 1]


@given(signed, st.integers(1, 2**32))
@settings(max_examples=50)
def test_any_two_servers_reconstruct_a_field_vector(vs: list[int], seed: int) -> None:
    x = from_ring(np.array(vs, dtype=np.int64))
    shares = share_field(x)
    for pair in ([0, 1], [1, 2], [0, 2], [0, 1, 2]):
        assert np.array_equal(reconstruct_field([shares[i] for i in pair]), x)


@given(st.lists(signed, min_size=2, max_size=5))
def test_the_mac_of_a_sum_is_the_sum_of_the_macs(owners: list[list[int]]) -> None:
    n = min(len(v) for v in owners)
    xs = [np.array(v[:n], dtype=np.int64) // 8 for v in owners]  # sums of up to 5 stay in range
    alpha = new_mac_key()
    total = sum(xs[1:], xs[0])
    tags = authenticate(xs[0], alpha)
    for x in xs[1:]:
        tags = f_add(tags, authenticate(x, alpha))
    assert verify(total, alpha, tags)


def changes() -> st.SearchStrategy[int]:
    """Differences a cheater may add to one element, the ring's zero divisors among them."""
    return st.one_of(
        st.sampled_from([1 << 63, 1 << 62, 3 << 62, 1 << 40, P, 2 * P, -1]),
        st.integers(-(1 << 63), (1 << 63) - 1).filter(lambda d: d != 0),
    )


@given(signed, changes(), st.data())
def test_a_changed_sum_fails_the_field_mac(vs: list[int], d: int, data: st.DataObject) -> None:
    x = np.array(vs, dtype=np.int64)
    alpha = new_mac_key()
    tags = authenticate(x, alpha)
    i = data.draw(st.integers(0, len(vs) - 1))
    forged = x.copy()
    forged[i : i + 1] += np.array([d % (1 << 64)], dtype=np.uint64).view(np.int64)  # wraps mod 2^64
    # a forgery passes only for one key in p - 1; a random key catches it (or the range does)
    assert not verify(forged, alpha, tags)


def test_a_mac_in_z_2_64_lets_a_zero_divisor_through_and_the_field_mac_does_not() -> None:
    x = np.array([5, -7, 11], dtype=np.int64)
    d = np.array([0, 1 << 63, 0], dtype=np.uint64).view(np.int64)
    alpha = 2 * 0x1234567  # any even key
    ring_tag = x * np.int64(alpha)
    assert np.array_equal((x + d) * np.int64(alpha), ring_tag)  # the ring MAC accepts the change
    assert not verify(x + d, new_mac_key(), authenticate(x, new_mac_key()))
    key = new_mac_key()
    assert not verify(x + d, key, authenticate(x, key))


def test_pick_finds_the_candidate_that_verifies() -> None:
    x = np.array([1, 2, 3], dtype=np.int64)
    key = new_mac_key()
    tags = authenticate(x, key)
    assert pick([x + 1, x, x - 1], key, tags) == 1
    assert pick([x + 1], key, tags) is None
