"""The noise the servers add and the privacy accountant (no MPC, no I/O)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from asyncmpc.learning.privacy.accountant import ORDERS, Accountant, noise_multiplier_for, skellam_rdp
from asyncmpc.learning.privacy.noise import secure_generator, skellam
from asyncmpc.learning.privacy.plan import rounded_sensitivity


@pytest.mark.parametrize("variance", [2.0, 50.0, 2.0**20])
def test_skellam_noise_is_integer_centred_with_the_asked_variance(variance: float) -> None:
    n = 200_000
    x = skellam(variance, n, secure_generator())
    assert x.dtype == np.int64
    # mean 0 and variance as asked, within five standard errors
    assert abs(x.mean()) < 5 * math.sqrt(variance / n)
    assert abs(x.var() / variance - 1) < 5 * math.sqrt(2 / n) + 0.001


def test_skellam_noise_fits_the_skellam_distribution() -> None:
    mu = 10.0
    x = skellam(2 * mu, 100_000, secure_generator())
    values = np.arange(-15, 16)
    observed = np.array([np.sum(x == v) for v in values] + [np.sum(np.abs(x) > 15)])
    pmf = stats.skellam.pmf(values, mu, mu)
    expected = len(x) * np.append(pmf, 1 - pmf.sum())
    _, p = stats.chisquare(observed, expected)
    assert p > 1e-4


def test_the_noise_source_is_aes_counter_mode_keyed_from_the_operating_system() -> None:
    from randomgen import AESCounter

    g = secure_generator()
    assert isinstance(g.bit_generator, AESCounter)
    assert not np.array_equal(skellam(100.0, 64, g), skellam(100.0, 64, secure_generator()))
    key = bytes(range(16))  # an injected key gives the same stream: the key is all there is
    same = [skellam(100.0, 64, secure_generator(lambda n: key[:n])) for _ in range(2)]
    assert np.array_equal(*same)


@pytest.mark.parametrize(("z", "rounds"), [(0.8, 1), (1.1, 10), (4.0, 500)])
def test_a_plain_gaussian_mechanisms_epsilon_is_dp_accountings(z: float, rounds: int) -> None:
    import dp_accounting
    from dp_accounting import rdp

    ours = Accountant(z, 1.0, 1e-5).epsilon(rounds)
    theirs = rdp.RdpAccountant(ORDERS)
    theirs.compose(dp_accounting.GaussianDpEvent(z), rounds)
    assert ours == theirs.get_epsilon(1e-5)
    # and within the classic bound: RDP of order a is a * rounds / (2 z^2) (Mironov 2017, Prop. 3)
    classic = min(a * rounds / (2 * z * z) + math.log(1e5) / (a - 1) for a in ORDERS)
    assert 0 < ours <= classic


@pytest.mark.parametrize(("epsilon", "q"), [(3.0, 0.1), (8.0, 1.0)])
def test_the_calibrated_noise_multiplier_spends_the_budget_and_no_more(epsilon: float, q: float) -> None:
    z = noise_multiplier_for(epsilon, 1e-5, 100, q)
    spent = Accountant(z, q, 1e-5).epsilon(100)
    assert spent <= epsilon * (1 + 1e-3) and spent >= epsilon * 0.99
    assert Accountant(z * 0.95, q, 1e-5).epsilon(100) > epsilon  # less noise would not do


@pytest.mark.parametrize(("z", "q", "rounds"), [(1.0, 0.1, 1), (1.3, 0.02, 700), (0.9, 1.0, 40)])
def test_epsilon_from_one_rounds_rdp_equals_dp_accountings_own_composition(z: float, q: float, rounds: int) -> None:
    import dp_accounting
    from dp_accounting import rdp

    theirs = rdp.RdpAccountant(ORDERS)
    theirs.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z)), rounds)
    assert Accountant(z, q, 1e-5).epsilon(rounds) == pytest.approx(theirs.get_epsilon(1e-5), rel=1e-12)


def test_rounds_within_a_budget_stop_before_it_would_be_exceeded() -> None:
    a = Accountant(1.0, 0.1, 1e-5)
    t = a.rounds_within(2.0, 10_000)
    assert a.epsilon(t) <= 2.0 < a.epsilon(t + 1)
    assert a.rounds_within(1e6, 50) == 50 and a.rounds_within(0.0, 50) == 0


def test_the_rounded_sensitivity_covers_every_rounding_of_a_clipped_vector() -> None:
    from asyncmpc.crypto.ring import decode, encode
    from asyncmpc.learning.optim import clip

    rng = np.random.default_rng(3)
    frac_bits, size, bound = 8, 500, 1.0
    l2, l1 = rounded_sensitivity(bound, size, frac_bits)
    for _ in range(50):
        x = clip(rng.normal(size=size), bound)
        units = decode(encode(x, frac_bits), frac_bits) * 2.0**frac_bits  # integers
        assert np.linalg.norm(units) <= l2 and np.abs(units).sum() <= l1


def test_skellam_rdp_is_the_gaussians_plus_a_term_that_vanishes_at_large_variance() -> None:
    l2, l1 = rounded_sensitivity(1.0, 10**6, 16)
    for z in (0.5, 1.0, 4.0):
        variance = (z * l2) ** 2
        for order in (2, 8, 64):
            gaussian = order / (2 * z * z)
            got = skellam_rdp(order, l2, l1, variance)
            assert gaussian < got < gaussian * (1 + 1e-6)  # at 16 fractional bits: the Gaussian's
    # and at a small scale the extra term is large: it is there for a reason
    assert skellam_rdp(2, 1.0, 10.0, 1.0) > 2 * (2 / 2)
    with pytest.raises(ValueError, match="integers above 1"):
        skellam_rdp(1, 1.0, 1.0, 1.0)
