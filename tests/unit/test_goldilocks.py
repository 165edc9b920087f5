"""The Goldilocks field (``crypto.goldilocks``) against Python integers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.crypto import goldilocks as gf

Q = gf.Q
EDGES = [
    0,
    1,
    2,
    Q - 1,
    Q - 2,
    (1 << 32) - 1,
    1 << 32,
    (1 << 32) + 1,
    1 << 63,
    Q // 2,
    (Q // 2) + 1,
    (1 << 64) - (1 << 33),
]
elements = st.one_of(st.sampled_from(EDGES), st.integers(0, Q - 1))
vectors = st.lists(st.tuples(elements, elements), min_size=1, max_size=50)


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([p[0] for p in pairs], dtype=np.uint64)
    b = np.array([p[1] for p in pairs], dtype=np.uint64)
    return a, b


@settings(max_examples=300, deadline=None)
@given(vectors)
def test_arithmetic_is_that_of_the_integers_mod_q(pairs: list[tuple[int, int]]) -> None:
    a, b = _arrays(pairs)
    assert gf.mul(a, b).tolist() == [(x * y) % Q for x, y in pairs]
    assert gf.add(a, b).tolist() == [(x + y) % Q for x, y in pairs]
    assert gf.sub(a, b).tolist() == [(x - y) % Q for x, y in pairs]
    assert gf.neg(a).tolist() == [(-x) % Q for x, _ in pairs]


def test_every_edge_product() -> None:
    pairs = [(x, y) for x in EDGES for y in EDGES]
    a, b = _arrays(pairs)
    assert gf.mul(a, b).tolist() == [(x * y) % Q for x, y in pairs]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from([-(2**63), -1, 0, 1, 2**63 - 1]), st.integers(-(2**63), 2**63 - 1)), min_size=1)
)
def test_signed_words_map_to_their_integers_mod_q(values: list[int]) -> None:
    x = np.array(values, dtype=np.int64)
    got = gf.from_signed(x)
    assert got.tolist() == [v % Q for v in values]
    assert all(int(c) == v for c, v in zip(gf.centred(got).tolist(), values, strict=True) if abs(v) < Q // 2)


def _centred(v: int) -> int:
    return v - Q if v > Q // 2 else v


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.integers(-(2**32) + 1, 2**32 - 1),
            st.sampled_from([2**32 - 1, -(2**32) + 1, 2**32, -(2**32), 0]),
            st.integers(0, Q - 1).map(_centred),
        ),
        min_size=0,
        max_size=60,
    )
)
def test_the_squared_norm_is_exact_for_small_and_huge_elements(values: list[int]) -> None:
    a = np.array([v % Q for v in values], dtype=np.uint64)
    assert gf.squared_norm(a) == sum(v * v for v in values)
    assert gf.to_signed(a).tolist() == values
