"""The field MAC over sums of ring values (p = 2^61 - 1), against Python integers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmpc.crypto.field import MAX_ABS, P, reduce_words
from asyncmpc.crypto.macs import MacKey, project, tag, verify
from asyncmpc.crypto.prf import BLOCK

signed = st.lists(st.integers(-MAX_ABS, MAX_ABS), min_size=1, max_size=40)


def test_keystream_words_become_elements_below_p() -> None:
    words = np.array([5, P, P + 6, (1 << 64) - 1, 1 << 61, P - 1], dtype=np.uint64)
    assert [int(v) for v in reduce_words(words)] == [5, 0, 5, 0, 0, P - 1]


@given(signed, st.lists(st.integers(0, P - 1), min_size=40, max_size=40))
def test_the_projection_is_the_inner_product_mod_p(vs: list[int], rs: list[int]) -> None:
    x = np.array(vs, dtype=np.int64)
    r = np.array(rs[: len(vs)], dtype=np.uint64)
    assert project(x, r) == sum(v * w for v, w in zip(vs, rs, strict=False)) % P


def test_the_projection_is_exact_past_one_chunk_and_at_the_extremes() -> None:
    n = (1 << 20) + 3
    x = np.full(n, -MAX_ABS, dtype=np.int64)
    x[::2] = MAX_ABS
    r = np.full(n, P - 1, dtype=np.uint64)
    plus, minus = (n + 1) // 2, n // 2
    expected = (MAX_ABS * (plus - minus) * (P - 1)) % P
    assert project(x, r) == expected


def test_the_tag_streams_the_key_block_by_block_and_equals_the_projection() -> None:
    n = 3 * BLOCK + 5  # several keystream blocks and a short last one
    x = np.random.default_rng(7).integers(-MAX_ABS, MAX_ABS, n, dtype=np.int64, endpoint=True)
    x[:3] = [MAX_ABS, -MAX_ABS, 0]
    key = MacKey.new()
    r = key.projection(n)
    expected = sum(int(v) * int(w) for v, w in zip(x.tolist(), r.tolist(), strict=True)) % P
    assert tag(x, key) == project(x, r) == expected
    assert tag(x[:7], key) == project(x[:7], r[:7])  # the prefix of a longer key's vector


@given(st.lists(signed, min_size=2, max_size=5))
def test_the_tag_of_a_sum_is_the_sum_of_the_tags(owners: list[list[int]]) -> None:
    n = min(len(v) for v in owners)
    xs = [np.array(v[:n], dtype=np.int64) // 8 for v in owners]  # sums of up to 5 stay in range
    key = MacKey.new()
    total = sum(xs[1:], xs[0])
    assert verify(total, key, sum(tag(x, key) for x in xs))


def changes() -> st.SearchStrategy[int]:
    """Differences a cheater may add to one element, the ring's zero divisors among them."""
    return st.one_of(
        st.sampled_from([1 << 63, 1 << 62, 3 << 62, 1 << 40, P, 2 * P, -1]),
        st.integers(-(1 << 63), (1 << 63) - 1).filter(lambda d: d != 0),
    )


@given(signed, changes(), st.integers(0, P - 1), st.data())
def test_a_changed_sum_fails_the_mac_whatever_the_tag_is_changed_by(
    vs: list[int], d: int, e: int, data: st.DataObject
) -> None:
    x = np.array(vs, dtype=np.int64)
    key = MacKey.new()
    t = tag(x, key)
    i = data.draw(st.integers(0, len(vs) - 1))
    forged = x.copy()
    forged[i : i + 1] += np.array([d % (1 << 64)], dtype=np.uint64).view(np.int64)  # wraps mod 2^64
    # a forgery passes for one key in p; a random key catches it (or the range does)
    assert not verify(forged, key, t + e)


def test_a_mac_in_z_2_64_lets_a_zero_divisor_through_and_the_field_mac_does_not() -> None:
    x = np.array([5, -7, 11], dtype=np.int64)
    d = np.array([0, 1 << 63, 0], dtype=np.uint64).view(np.int64)
    alpha = 2 * 0x1234567  # any even key
    assert np.array_equal((x + d) * np.int64(alpha), x * np.int64(alpha))  # the ring MAC accepts it
    key = MacKey.new()
    assert not verify(x + d, key, tag(x, key))  # out of range, and a different sum mod p
    near = x.copy()
    near[1] += P  # the same mod p: only the range check stops it
    assert not verify(near, key, tag(x, key))


def test_a_key_is_secret_in_print_and_its_parts_are_fixed_by_its_bytes() -> None:
    key = MacKey(bytes(range(16)))
    assert "hidden" in repr(key) and "\\x00" not in repr(key)
    r = key.projection(1000)
    assert r.dtype == np.uint64 and int(r.max()) < P and np.array_equal(r, key.projection(1000))
    assert not np.array_equal(r, MacKey.new().projection(1000))
    with pytest.raises(ValueError, match="16 bytes"):
        MacKey(b"short")
    with pytest.raises(ValueError, match="within"):
        tag(np.array([MAX_ABS + 1], dtype=np.int64), key)
