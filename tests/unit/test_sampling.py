"""Example-level contributions: Poisson sampling and per-example clipping (no MPC, no I/O)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.learning.models import build_model
from asyncmpc.learning.privacy.sampling import clipped_sum, poisson_sample

KEY = bytes(range(16))


@given(n=st.integers(0, 2000), rate=st.floats(0.001, 1.0), round_no=st.integers(1, 10**6))
def test_a_rounds_sample_is_a_set_of_indices_that_repeats_for_the_same_round(
    n: int, rate: float, round_no: int
) -> None:
    rows = poisson_sample(n, rate, KEY, round_no)
    assert rows.dtype == np.int64 and np.all(np.diff(rows) > 0) and (len(rows) == 0 or 0 <= rows[0] <= rows[-1] < n)
    assert np.array_equal(rows, poisson_sample(n, rate, KEY, round_no))
    if rate == 1.0:
        assert np.array_equal(rows, np.arange(n))


def test_samples_have_the_rate_and_differ_between_rounds_and_keys() -> None:
    n, rate = 100_000, 0.1
    a, b = poisson_sample(n, rate, KEY, 1), poisson_sample(n, rate, KEY, 2)
    other = poisson_sample(n, rate, bytes(16), 1)
    sd = (n * rate * (1 - rate)) ** 0.5
    assert all(abs(len(s) - n * rate) < 5 * sd for s in (a, b, other))
    # independent draws overlap in about rate^2 of the examples
    for s, t in ((a, b), (a, other)):
        assert abs(len(np.intersect1d(s, t)) - n * rate * rate) < 5 * (n * rate * rate) ** 0.5


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
