"""The norm check's wrap-around test (``crypto.projections``): exact projections mod 2^64, the
entries' distribution, and the soundness and completeness it claims."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.projections import BLOCK, K, WrapTest, centred_abs, project, project_field, ternary

SEEDS = [bytes([i]) * 16 for i in range(40)]


def _matrix(seed: bytes, k: int, d: int) -> np.ndarray:
    return np.concatenate([ternary(seed, k, lo, min(d, lo + BLOCK)) for lo in range(0, d, BLOCK)], axis=1)


def _reference(seed: bytes, k: int, x: np.ndarray) -> list[int]:
    """The projections with Python integers, reduced to signed 64-bit."""
    r = _matrix(seed, k, len(x)).astype(np.int64).astype(object)
    ys = r.dot(np.array([int(v) for v in x], dtype=object))
    return [((int(y) + 2**63) % 2**64) - 2**63 for y in ys]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=40), st.sampled_from(SEEDS[:4]))
def test_projections_are_exact_mod_2_64(values: list[int], seed: bytes) -> None:
    x = np.array(values, dtype=np.int64)
    assert project(seed, 8, [x])[0].tolist() == _reference(seed, 8, x)


def test_projections_are_exact_across_blocks_and_for_several_vectors() -> None:
    rng = np.random.default_rng(1)
    d = 2 * BLOCK + 7
    xs = [rng.integers(-(2**63), 2**63, d, dtype=np.int64) for _ in range(3)]
    got = project(SEEDS[0], 5, xs)
    assert got.shape == (3, 5)
    for i, x in enumerate(xs):
        assert got[i].tolist() == _reference(SEEDS[0], 5, x)


def test_entries_are_minus_one_zero_one_with_probabilities_a_quarter_a_half_a_quarter() -> None:
    r = ternary(SEEDS[0], K, 0, BLOCK)
    counts = {v: int((r == v).sum()) / r.size for v in (-1.0, 0.0, 1.0)}
    assert abs(counts[-1.0] - 0.25) < 0.005 and abs(counts[0.0] - 0.5) < 0.005 and abs(counts[1.0] - 0.25) < 0.005
    assert np.array_equal(r, ternary(SEEDS[0], K, 0, BLOCK))  # every server draws the same
    assert not np.array_equal(r, ternary(SEEDS[1], K, 0, BLOCK))
    assert not np.array_equal(r, ternary(SEEDS[0], K, BLOCK, 2 * BLOCK))


def test_an_honest_vector_at_the_bound_passes_every_projection() -> None:
    test = WrapTest(bound=2**20)
    rng = np.random.default_rng(2)
    for seed in SEEDS:
        x = rng.normal(size=10_000)
        x = np.round(x / np.linalg.norm(x) * (test.bound - 100)).astype(np.int64)
        assert test.passes(project(seed, K, [x])[0]).all()


@pytest.mark.parametrize(
    ("name", "poison"),
    [
        ("2^63 in one coordinate (its square is 0 mod 2^64)", lambda x: x.__setitem__(3, -(2**63))),
        ("2^32 in one coordinate (its square wraps to 0)", lambda x: x.__setitem__(7, 2**32)),
        ("2^63 in two coordinates (a +-1 test never sees it)", lambda x: x.__setitem__(slice(0, 2), -(2**63))),
        ("every coordinate within 2T, the norm 50 T", lambda x: x.__setitem__(slice(None), 0)),
    ],
)
def test_a_vector_that_wraps_or_is_far_over_the_bound_fails(name: str, poison: object) -> None:
    test = WrapTest(bound=2**16)
    x = np.zeros(10_000, dtype=np.int64)
    poison(x)  # type: ignore[operator]
    if not x.any():
        x[:] = test.threshold // 2  # norm = T/2 * 100 = 50 T
    squared = sum(int(v) ** 2 for v in x.tolist()) % 2**64
    assert squared <= test.bound**2 or "norm" in name  # each wrapping vector's square looks small
    passed = [test.passes(project(seed, K, [x])[0]) for seed in SEEDS]
    assert not any(p.all() for p in passed), name
    share = sum(int(p.sum()) for p in passed) / (len(SEEDS) * K)
    assert share <= 0.6, f"{name}: {share:.2f} of projections passed"  # at most 1/2 each, in expectation


def test_the_ring_bound_is_stated_and_enforced() -> None:
    test = WrapTest(bound=1000)
    assert test.threshold == 7000 and test.max_bound() == int(2**32 / (8.6 * 7))
    WrapTest(bound=test.max_bound())
    with pytest.raises(ValueError, match="too large to check in Z_2\\^64"):
        WrapTest(bound=test.max_bound() + 1)
    with pytest.raises(ValueError, match="at least 1"):
        WrapTest(bound=0)
    assert centred_abs(np.array([-(2**63), -1, 5], dtype=np.int64)).tolist() == [2**63, 1, 5]
    assert 2 * K * math.exp(-(7.0**2)) < 2**-64  # an honest vector fails one of K projections


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, gf.Q - 1), min_size=1, max_size=40), st.sampled_from(SEEDS[:4]))
def test_field_projections_are_exact_mod_q(values: list[int], seed: bytes) -> None:
    x = np.array(values, dtype=np.uint64)
    r = _matrix(seed, 8, len(values)).astype(np.int64).astype(object)
    expected = [int(v) % gf.Q for v in r.dot(np.array(values, dtype=object))]
    assert project_field(seed, 8, [x])[0].tolist() == expected


def test_the_field_test_sees_an_element_near_q_over_2_half_the_time() -> None:
    """PINE's test in the field: (q - 1) / 2 doubles to -1, the field's analogue of 2^63."""
    test = WrapTest(bound=2**16)
    x = np.zeros(5_000, dtype=np.uint64)
    x[11] = (gf.Q - 1) // 2
    passed = [
        centred_abs(gf.centred(project_field(seed, K, [x])[0]).astype(np.int64)) <= test.threshold for seed in SEEDS
    ]
    assert not any(p.all() for p in passed)
    assert sum(int(p.sum()) for p in passed) / (len(SEEDS) * K) <= 0.6
