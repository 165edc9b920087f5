"""Example-level contributions: Poisson sampling and per-example clipping (no MPC, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.learning.models import build_model
from asyncmpc.learning.privacy.sampling import clippable, clipped_sum, poisson_bits

KEY = bytes(range(16))


@given(n=st.integers(0, 2000), rate=st.floats(0.001, 1.0))
def test_a_sample_is_a_bit_per_unit_and_the_same_key_draws_it_again(n: int, rate: float) -> None:
    bits = poisson_bits(n, rate, KEY)
    assert bits.shape == (n,) and set(np.unique(bits)) <= {0.0, 1.0}
    assert np.array_equal(bits, poisson_bits(n, rate, KEY))
    if rate == 1.0:
        assert bits.all()


def test_samples_have_the_rate_and_differ_between_keys() -> None:
    n, rate = 100_000, 0.1
    a, b = (np.flatnonzero(poisson_bits(n, rate, key)) for key in (KEY, bytes(16)))
    sd = (n * rate * (1 - rate)) ** 0.5
    assert all(abs(len(s) - n * rate) < 5 * sd for s in (a, b))
    # independent draws overlap in about rate^2 of the examples
    assert abs(len(np.intersect1d(a, b)) - n * rate * rate) < 5 * (n * rate * rate) ** 0.5


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bound=st.floats(0.01, 10.0))
def test_the_clipped_sum_bounds_each_examples_influence(seed: int, bound: float) -> None:
    rng = np.random.default_rng(seed)
    model = build_model("mlp", 4, 3, {"hidden_layers": [5]}, seed)
    theta = model.init()
    x, y = rng.normal(size=(12, 4)) * 5, rng.integers(0, 3, size=12)
    total, loss = clipped_sum(model, theta, x, y, bound)
    # removing one example moves the sum by at most the bound (the sensitivity)
    for i in range(len(y)):
        rest, _ = clipped_sum(model, theta, np.delete(x, i, axis=0), np.delete(y, i), bound)
        assert np.linalg.norm(total - rest) <= bound * (1 + 1e-9)
    # with a bound no gradient reaches, it is the sum of the per-example gradients
    loose, loose_loss = clipped_sum(model, theta, x, y, 1e12)
    per_example = sum(model.gradient(theta, x[i : i + 1], y[i : i + 1])[1] for i in range(len(y)))
    np.testing.assert_allclose(loose, per_example, rtol=1e-12)
    assert loss == pytest.approx(loose_loss)
    empty, nothing = clipped_sum(model, theta, x[:0], y[:0], bound)
    assert not empty.any() and nothing == 0.0


def test_the_clipped_sum_weights_each_example_by_its_bit() -> None:
    rng = np.random.default_rng(5)
    model = build_model("logreg", 3, 2, {}, 0)
    theta = rng.normal(size=model.size)
    x, y = rng.normal(size=(9, 3)), rng.integers(0, 2, size=9)
    bits = poisson_bits(9, 0.5, KEY)
    rows = np.flatnonzero(bits)
    weighted, weighted_loss = clipped_sum(model, theta, x, y, 0.3, bits)
    sampled, sampled_loss = clipped_sum(model, theta, x[rows], y[rows], 0.3)
    np.testing.assert_allclose(weighted, sampled, rtol=1e-12, atol=1e-15)
    assert weighted_loss == pytest.approx(sampled_loss)


def test_a_gradient_that_is_not_finite_counts_as_zero_and_one_that_overflows_keeps_its_direction() -> None:
    nan, huge = np.array([1.0, np.nan]), np.array([1e308, -1e308])
    assert not clippable(nan).any()
    assert np.isfinite(np.linalg.norm(clippable(huge)))
    np.testing.assert_allclose(clippable(huge), [1.0, -1.0])
    fine = np.array([3.0, 4.0])
    assert clippable(fine) is fine
