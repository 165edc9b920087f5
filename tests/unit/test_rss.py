"""Replicated 2-of-3 sharing: reconstruction, linearity, products, cross-checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asyncmpc.crypto import rss
from asyncmpc.crypto.prf import ZeroSharer, expand, new_seed, round_nonce
from asyncmpc.crypto.ring import decode, encode
from asyncmpc.errors import EncodingError

ELEM = st.integers(-(1 << 63), (1 << 63) - 1)
vectors = hnp.arrays(np.int64, st.integers(1, 200), elements=ELEM)


def pairs_of(shares: tuple[rss.RShare, ...]) -> list[list[rss.RShare]]:
    return [list(p) for p in itertools.combinations(shares, 2)] + [list(shares)]


def three_parties() -> list[ZeroSharer]:
    keys = [new_seed() for _ in range(3)]
    return [ZeroSharer(keys[i], keys[(i + 1) % 3]) for i in range(3)]


@given(vectors)
def test_any_two_servers_reconstruct_bit_for_bit(x: np.ndarray) -> None:
    shares = rss.share(x)
    for subset in pairs_of(shares):
        np.testing.assert_array_equal(rss.reconstruct(subset), x)
    assert rss.cross_check(shares) == ()


@given(vectors)
def test_seed_compressed_shares_reconstruct(x: np.ndarray) -> None:
    seeded = rss.share_seeded(x)
    assert isinstance(seeded[0].a, rss.Seed) and isinstance(seeded[0].b, rss.Seed)
    full = tuple(rss.RShare(s.server, rss.materialize(s.a, x.shape), rss.materialize(s.b, x.shape)) for s in seeded)
    assert rss.cross_check(full) == ()
    for subset in pairs_of(full):
        np.testing.assert_array_equal(rss.reconstruct(subset), x)


@given(hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e6, 1e6)))
def test_encoded_floats_round_trip_through_shares(x: np.ndarray) -> None:
    enc = encode(x)
    back = rss.reconstruct(rss.share(enc)[:2])
    np.testing.assert_array_equal(back, enc)
    assert np.all(np.abs(decode(back) - x) <= 2.0**-17 + np.abs(x) * 2**-52)


@given(hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e6, 1e6)), st.integers(1, 40_000), st.booleans())
def test_share_reals_is_sharing_the_encoding_and_never_reuses_seeds(
    pattern: np.ndarray, n: int, prepared: bool
) -> None:
    x = np.resize(pattern, n)
    sharer = rss.InputSharer(keep_buffers=prepared)
    if prepared:
        sharer.prepare(x.shape)
    seeded = sharer.share_reals(x, 16, max_terms=10)
    again = sharer.share_reals(x, 16, max_terms=10)
    for sh in (seeded, again):
        full = [rss.RShare(s.server, rss.materialize(s.a, x.shape), rss.materialize(s.b, x.shape)) for s in sh]
        np.testing.assert_array_equal(rss.reconstruct(full[:2]), encode(x, 16, max_terms=10))
    assert seeded[0].a != again[0].a and seeded[0].b != again[0].b


def test_share_reals_refuses_nan_without_using_its_seeds() -> None:
    drawn = []

    def counting(n: int) -> bytes:
        drawn.append(n)
        return bytes(range(n))

    sharer = rss.InputSharer(counting)
    sharer.prepare((3,))
    with pytest.raises(EncodingError, match="element 1"):
        sharer.share_reals(np.array([0.0, np.nan, 1.0]), 16)
    sharer.share_reals(np.array([0.0, 2.0, 1.0]), 16)
    assert len(drawn) == 2  # the prepared seeds were kept for the next (valid) input


@given(vectors, st.data())
def test_local_operations_match_the_clear(x: np.ndarray, data: st.DataObject) -> None:
    y = data.draw(hnp.arrays(np.int64, x.shape, elements=ELEM))
    k = data.draw(st.integers(-(1 << 64), 1 << 64))
    sx, sy = rss.share(x), rss.share(y)
    k_ring = np.array(k % (1 << 64), dtype=np.uint64).view(np.int64)
    np.testing.assert_array_equal(rss.reconstruct([rss.add(a, b) for a, b in zip(sx, sy, strict=True)]), x + y)
    np.testing.assert_array_equal(rss.reconstruct([rss.sub(a, b) for a, b in zip(sx, sy, strict=True)]), x - y)
    np.testing.assert_array_equal(rss.reconstruct([rss.mul_public(a, k) for a in sx]), x * k_ring)
    np.testing.assert_array_equal(rss.reconstruct([rss.add_public(a, y) for a in sx]), x + y)


@settings(max_examples=50)
@given(vectors, st.data())
def test_shared_product_and_dot_are_exact_in_the_ring(x: np.ndarray, data: st.DataObject) -> None:
    y = data.draw(hnp.arrays(np.int64, x.shape, elements=ELEM))
    zeros = three_parties()
    sx, sy = rss.share(x), rss.share(y)
    z = [rss.mul_local(sx[i], sy[i], zeros[i], "mul") for i in range(3)]
    prod = [rss.reshare(i, z[i], z[(i + 1) % 3]) for i in range(3)]
    assert rss.cross_check(prod) == ()
    np.testing.assert_array_equal(rss.reconstruct(prod), x * y)
    d = [rss.dot_local(sx[i], sy[i], zeros[i], "dot") for i in range(3)]
    dot = [rss.reshare(i, d[i], d[(i + 1) % 3]) for i in range(3)]
    expected = sum(int(a) * int(b) for a, b in zip(x, y, strict=True)) % (1 << 64)
    assert int(rss.reconstruct(dot)) % (1 << 64) == expected


def test_zero_shares_sum_to_zero_and_each_looks_random() -> None:
    zeros = three_parties()
    alphas = [z.zero_share("tag", 1000) for z in zeros]
    np.testing.assert_array_equal(alphas[0] + alphas[1] + alphas[2], np.zeros(1000, dtype=np.int64))
    assert all(np.count_nonzero(a) == 1000 for a in alphas)
    assert not np.array_equal(zeros[0].zero_share("other", 1000), alphas[0])


def test_cross_check_names_the_server_that_lied() -> None:
    x = np.arange(100, dtype=np.int64)
    shares = list(rss.share(x))
    # server 1 changes both components it holds: components 1 and 2 disagree, server 1 holds both
    liar = rss.RShare(1, shares[1].a + 1, shares[1].b + 1)
    assert rss.cross_check([shares[0], liar, shares[2]]) == (1,)
    # one component changed: either of its two holders may be at fault
    half = rss.RShare(2, shares[2].a, shares[2].b ^ 4)
    assert rss.cross_check([shares[0], shares[1], half]) == (0, 2)


def test_reconstruct_needs_two_distinct_servers() -> None:
    shares = rss.share(np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError, match="two or three distinct servers"):
        rss.reconstruct([shares[0]])
    with pytest.raises(ValueError, match="two or three distinct servers"):
        rss.reconstruct([shares[1], shares[1]])


def test_reprs_do_not_show_share_values_or_seeds() -> None:
    x = np.array([123456789, 42], dtype=np.int64)
    full = rss.share(x)
    seeded = rss.share_seeded(x)
    shown = repr(full) + repr(seeded) + repr(rss.Seed(b"k" * 16))
    for s in full:
        assert str(int(s.a[0])) not in shown and str(int(s.b[0])) not in shown
    assert "kkkk" not in shown and "b'" not in shown


def test_a_keyed_sharer_masks_each_round_with_its_keys_and_never_twice() -> None:
    sharer = rss.InputSharer(keyed=True)
    assert sharer.keys is not None
    k0, k1 = (k.key for k in sharer.keys)
    x = np.arange(10, dtype=np.int64)
    sharer.prepare(x.shape, 3)
    seen = []
    for round_no in (3, 4, 9):
        shares = sharer.share(x, round_no)
        assert shares[0].a is rss.KEYED and shares[0].b is rss.KEYED and shares[2].b is rss.KEYED
        nonce = round_nonce(round_no)
        x2 = shares[1].b
        assert isinstance(x2, np.ndarray)
        np.testing.assert_array_equal(x2 + expand(k0, 10, nonce) + expand(k1, 10, nonce), x)
        seen.append(x2)
    assert not np.array_equal(seen[0], seen[1])
    for stale in (9, 4):
        with pytest.raises(ValueError, match=f"round {stale} is not after round 9"):
            sharer.share(x, stale)
    with pytest.raises(ValueError, match="round None"):
        sharer.share(x)
