"""The privacy accountant: the epsilon that rounds of the mechanism we run spend, and the noise
multiplier a target epsilon needs.

A round releases a sum of clipped contributions plus noise; each unit (an example, or an owner)
takes part with probability ``sampling_rate`` (Poisson sampling, add/remove adjacency). The
noise is Skellam (``noise``), of variance ``(noise_multiplier * l2)^2`` in fixed-point units
against the model owner with one colluding server (``plan``), where ``l2`` and ``l1`` are the
sum's L2 and L1 sensitivity in those units (``plan.rounded_sensitivity``).

``SkellamAccountant``: the *proven* epsilon of that mechanism, the one we calibrate to and
enforce. Every step is a published bound that holds for the Skellam mechanism:

1. one round without sampling: the Skellam mechanism's Renyi DP at integer orders (Agarwal,
   Kairouz and Liu, "The Skellam Mechanism for Differentially Private Federated Learning",
   NeurIPS 2021, Theorem 3.5): ``skellam_rdp``;
2. Poisson sampling: the general upper bound for integer orders of Zhu and Wang, "Poisson
   Subsampled Renyi Differential Privacy", ICML 2019 (PMLR 97), section 3, which holds for any
   mechanism (their exact formula, which dp-accounting uses, holds for the Gaussian and Laplace
   mechanisms only); at each order the smaller of it and the unsampled RDP, since sampling never
   weakens a guarantee (joint convexity of exp((a - 1) D_a)): ``poisson_subsampled_rdp``. This
   is how google-research's ``distributed_dp/accounting_utils.py`` (``skellam_epsilon``)
   accounts for the Skellam mechanism;
3. rounds: RDP adds up (Mironov, "Renyi Differential Privacy", CSF 2017), and the total converts
   to (epsilon, delta) as dp-accounting's ``rdp_privacy_accountant.compute_epsilon`` does
   (Canonne, Kamath and Steinke 2020, Proposition 12), which holds for any mechanism.

``Accountant``: the Gaussian-equivalent epsilon, that of the Poisson-subsampled *Gaussian*
mechanism of the same noise multiplier as Google's ``dp-accounting`` computes it (Mironov,
Talwar and Zhang, "Renyi Differential Privacy of the Sampled Gaussian Mechanism", 2019),
and its calibration (``noise_multiplier_for``). Reported beside the proven figure, for comparison
with systems that add Gaussian noise; not a bound for the noise we add.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dp_accounting
import numpy as np
from dp_accounting import rdp
from dp_accounting.rdp import rdp_privacy_accountant
from numpy.typing import NDArray

__all__ = [
    "TreeAccountant",
    "TreeRounds",
    "epsilon_of",
    "tree_epoch_rdp",
    "tree_noise_multiplier_for",
    "LEAST_NOISE",
    "MOST_NOISE",
    "ORDERS",
    "Accountant",
    "SkellamAccountant",
    "noise_multiplier_for",
    "poisson_subsampled_rdp",
    "skellam_noise_multiplier_for",
    "skellam_rdp",
]

Floats = NDArray[np.float64]

ORDERS = (*range(2, 65), 80, 96, 128, 160, 192, 256, 384, 512, 768, 1024)
"""Integer Renyi orders: the subsampled Gaussian's RDP is computed exactly at integer orders
(fractional ones need a series that does not always converge), and Zhu and Wang's bound holds at
integer orders only. Every order to 64, sparser above: the same epsilon as every integer to 256
for the budgets we meet (checked in the tests), at a sixth of the cost (a Gaussian round's RDP
takes 60 ms instead of 370)."""

LEAST_NOISE = 1e-3
"""The smallest noise multiplier calibration returns."""
MOST_NOISE = 1e6
"""The largest noise multiplier calibration tries: a target the proven epsilon misses even there
is out of reach (one below 0.004 over a million rounds at delta 1e-5, say)."""


def _check(noise_multiplier: float, sampling_rate: float, delta: float) -> None:
    if not noise_multiplier > 0:
        raise ValueError(f"noise multiplier {noise_multiplier}: must be positive")
    if not 0 < sampling_rate <= 1:
        raise ValueError(f"sampling rate {sampling_rate}: must be in (0, 1]")
    if not 0 < delta < 1:
        raise ValueError(f"delta {delta}: must be in (0, 1)")


def _epsilon(round_rdp: Floats, rounds: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``rounds`` rounds of RDP ``round_rdp`` at ``ORDERS`` each."""
    if rounds <= 0:
        return 0.0
    return epsilon_of(rounds * round_rdp, delta)


def epsilon_of(rdp: Floats, delta: float) -> float:
    """Epsilon at ``delta`` of releases whose RDP at ``ORDERS`` adds up to ``rdp`` (RDP composes
    by adding, whatever each release's mechanism; Mironov 2017)."""
    if not np.any(rdp):
        return 0.0
    eps, _ = rdp_privacy_accountant.compute_epsilon(ORDERS, rdp, delta)
    return float(eps)


def _rounds_within(epsilon: Callable[[int], float], budget: float, most: int) -> int:
    low, high = 0, most  # epsilon grows with the rounds: search for the last one within
    while low < high:
        mid = (low + high + 1) // 2
        if epsilon(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _event(noise_multiplier: float, sampling_rate: float, rounds: int) -> dp_accounting.DpEvent:
    one: dp_accounting.DpEvent = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1:
        one = dp_accounting.PoissonSampledDpEvent(sampling_rate, one)
    return dp_accounting.SelfComposedDpEvent(one, rounds)


@dataclass(frozen=True)
class Accountant:
    """The Gaussian-equivalent epsilon (module docstring): dp-accounting's, for Gaussian noise."""

    noise_multiplier: float
    sampling_rate: float
    delta: float

    def __post_init__(self) -> None:
        _check(self.noise_multiplier, self.sampling_rate, self.delta)

    @functools.cached_property
    def round_rdp(self) -> Floats:
        """The RDP of one round at each of ``ORDERS`` (RDP adds up over rounds). Computed once:
        dp-accounting computes it afresh on every ``compose`` (about half a second for a
        subsampled round)."""
        accountant = rdp.RdpAccountant(ORDERS)
        accountant.compose(_event(self.noise_multiplier, self.sampling_rate, 1))
        return np.array(accountant._rdp, dtype=np.float64)

    def epsilon(self, rounds: int) -> float:
        """Epsilon at ``delta`` after ``rounds`` rounds (0 for none)."""
        return _epsilon(self.round_rdp, rounds, self.delta)

    def rounds_within(self, budget: float, most: int) -> int:
        """The largest number of rounds, at most ``most``, whose epsilon is within ``budget``."""
        return _rounds_within(self.epsilon, budget, most)


def noise_multiplier_for(epsilon: float, delta: float, rounds: int, sampling_rate: float) -> float:
    """The smallest noise multiplier (within 1e-4) for which ``rounds`` rounds stay within
    (epsilon, delta) by the Gaussian-equivalent figure (``Accountant``)."""
    if not epsilon > 0:
        raise ValueError(f"epsilon {epsilon}: must be positive")
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: rdp.RdpAccountant(ORDERS),
            lambda z: _event(z, sampling_rate, rounds),
            epsilon,
            delta,
            dp_accounting.LowerEndpointAndGuess(1e-3, 1.0),
            tol=1e-4,
        )
    )


def skellam_rdp(order: int, l2: float, l1: float, variance: float) -> float:
    """Renyi DP of order ``order`` (an integer > 1) of adding Skellam noise of ``variance`` per
    coordinate to a query of L2 and L1 sensitivity ``l2`` and ``l1`` (all in the same integer
    units): Agarwal, Kairouz and Liu 2021, Theorem 3.5, that is the Gaussian mechanism's
    order * l2^2 / (2 variance) plus min(((2 order - 1) l2^2 + 6 l1) / (4 variance^2),
    3 l1 / (2 variance))."""
    if order < 2 or int(order) != order:
        raise ValueError(f"Renyi order {order}: the bound holds for integers above 1")
    extra = min(((2 * order - 1) * l2 * l2 + 6 * l1) / (4 * variance * variance), 3 * l1 / (2 * variance))
    return order * l2 * l2 / (2 * variance) + extra


def _skellam_rdps(top: int, l2: float, l1: float, variance: float) -> Floats:
    """``skellam_rdp`` at every order from 2 to ``top``."""
    a = np.arange(2, top + 1, dtype=np.float64)
    extra = np.minimum(((2 * a - 1) * l2 * l2 + 6 * l1) / (4 * variance * variance), 3 * l1 / (2 * variance))
    return a * l2 * l2 / (2 * variance) + extra


def _log_sum_exp(x: Floats) -> float:
    top = float(x.max())
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.exp(x - top).sum()))


def poisson_subsampled_rdp(rdp_of: Floats, sampling_rate: float, orders: Sequence[int] = ORDERS) -> Floats:
    """An upper bound on the Renyi DP, at each of ``orders`` (integers above 1), of a mechanism
    run on a Poisson sample of rate q = ``sampling_rate``, the mechanism's own RDP at order l
    being ``rdp_of[l - 2]`` for l = 2 .. max(orders). Zhu and Wang 2019, general upper bound (the module
    docstring): for a mechanism of RDP eps(l),

        eps_q(a) <= 1/(a-1) log( (1-q)^(a-1) (a q - q + 1) + C(a,2) q^2 (1-q)^(a-2) e^eps(2)
                                 + 3 sum_{l=3..a} C(a,l) q^l (1-q)^(a-l) e^((l-1) eps(l)) ),

    and eps_q(a) <= eps(a) too, so the smaller of the two; with q = 1, eps(a) itself. Summed in
    log space (the terms reach e^(10^6) at large orders and little noise)."""
    q = sampling_rate
    if not 0 < q <= 1:
        raise ValueError(f"sampling rate {q}: must be in (0, 1]")
    top = max(orders)
    if min(orders) < 2 or len(rdp_of) < top - 1:
        raise ValueError(f"orders 2 to {top} need the mechanism's RDP at each of them")
    unsampled = np.array([rdp_of[a - 2] for a in orders], dtype=np.float64)
    if q == 1:
        return unsampled
    log_factorial = np.array([math.lgamma(n + 1) for n in range(top + 1)])
    log_q, log_p = math.log(q), math.log1p(-q)
    out = np.empty(len(orders))
    for i, a in enumerate(orders):
        ls = np.arange(3, a + 1)
        terms = np.empty(a)
        terms[0] = (a - 1) * log_p + math.log1p((a - 1) * q)
        terms[1] = math.log(a * (a - 1) / 2) + 2 * log_q + (a - 2) * log_p + rdp_of[0]
        terms[2:] = (
            math.log(3)
            + (log_factorial[a] - log_factorial[ls] - log_factorial[a - ls])
            + ls * log_q
            + (a - ls) * log_p
            + (ls - 1) * rdp_of[ls - 2]
        )
        out[i] = min(unsampled[i], _log_sum_exp(terms) / (a - 1))
    return out


@dataclass(frozen=True)
class SkellamAccountant:
    """The proven epsilon of rounds of the Poisson-subsampled Skellam mechanism (the module
    docstring), with the Gaussian-equivalent figure beside it (``gaussian_epsilon``)."""

    noise_multiplier: float
    sampling_rate: float
    delta: float
    l2: float
    """The L2 sensitivity in fixed-point units (``plan.rounded_sensitivity``)."""
    l1: float
    """The L1 sensitivity in the same units."""

    def __post_init__(self) -> None:
        _check(self.noise_multiplier, self.sampling_rate, self.delta)
        if not (self.l2 > 0 and self.l1 > 0):
            raise ValueError(f"sensitivities L2 {self.l2}, L1 {self.l1}: must be positive")

    @property
    def variance(self) -> float:
        """The noise variance the guarantee counts on, (noise_multiplier * l2)^2: what the model
        owner with one colluding server still faces (``plan``)."""
        return (self.noise_multiplier * self.l2) ** 2

    @functools.cached_property
    def round_rdp(self) -> Floats:
        """The bound on one round's RDP at each of ``ORDERS`` (about a millisecond)."""
        own = _skellam_rdps(max(ORDERS), self.l2, self.l1, self.variance)
        return poisson_subsampled_rdp(own, self.sampling_rate)

    @functools.cached_property
    def gaussian(self) -> Accountant:
        """The Gaussian-equivalent accountant of the same noise multiplier and sampling rate."""
        return Accountant(self.noise_multiplier, self.sampling_rate, self.delta)

    def epsilon(self, rounds: int) -> float:
        """The proven epsilon at ``delta`` after ``rounds`` rounds (0 for none)."""
        return _epsilon(self.round_rdp, rounds, self.delta)

    def gaussian_epsilon(self, rounds: int) -> float:
        """The Gaussian-equivalent epsilon after ``rounds`` rounds (never above ``epsilon``)."""
        return self.gaussian.epsilon(rounds)

    def rounds_within(self, budget: float, most: int) -> int:
        """The largest number of rounds, at most ``most``, whose proven epsilon is within
        ``budget``."""
        return _rounds_within(self.epsilon, budget, most)


def skellam_noise_multiplier_for(
    epsilon: float, delta: float, rounds: int, sampling_rate: float, l2: float, l1: float
) -> float:
    """The smallest noise multiplier, to a relative 1e-4 and rounded up, whose proven epsilon
    (``SkellamAccountant``) over ``rounds`` rounds is within (epsilon, delta); at least
    ``LEAST_NOISE``. Bisection on the multiplier's logarithm (the proven epsilon falls as the
    multiplier grows), about 25 evaluations, 30 ms. ValueError if even
    ``MOST_NOISE`` is not enough."""
    if not epsilon > 0:
        raise ValueError(f"epsilon {epsilon}: must be positive")

    def within(z: float) -> bool:
        return SkellamAccountant(z, sampling_rate, delta, l2, l1).epsilon(rounds) <= epsilon

    return _smallest(within, f"epsilon {epsilon:g} at delta {delta:g} over {rounds} rounds")


def _smallest(within: Callable[[float], bool], what: str) -> float:
    """The smallest noise multiplier in [``LEAST_NOISE``, ``MOST_NOISE``], to a relative 1e-4
    and rounded up, for which ``within`` holds (it holds for all larger ones): bisection on the
    multiplier's logarithm. ValueError naming ``what`` if even ``MOST_NOISE`` is not enough."""
    if within(LEAST_NOISE):
        return LEAST_NOISE
    low, high = LEAST_NOISE, 1.0
    while not within(high):
        if high >= MOST_NOISE:
            raise ValueError(f"{what}: out of reach of the proven bound at any noise multiplier up to {MOST_NOISE:g}")
        low, high = high, min(2 * high, MOST_NOISE)
    while high - low > 1e-4 * high:  # within(high), not within(low)
        mid = math.sqrt(low * high)
        if within(mid):
            high = mid
        else:
            low = mid
    return high


def tree_epoch_rdp(steps: int, l2: float, l1: float, variance: float) -> Floats:
    """The Renyi DP at each of ``ORDERS`` of one tree of DP-FTRL noise over ``steps`` rounds
    (``tree``): an example is in one leaf, so in at most depth(steps) nodes, each a Skellam
    mechanism of sensitivity (``l2``, ``l1``) and ``variance``; the releases are a function of
    the nodes, so the tree costs depth(steps) times one node (adaptive composition; Kairouz et
    al. 2021, Appendix D, for the Gaussian; dp-accounting's ``SingleEpochTreeAggregationDpEvent``
    is the same with the Gaussian's RDP). Adjacency is zero-out: an example replaced by one
    that contributes nothing, as the tree's analysis needs (the batches stay aligned)."""
    from asyncmpc.learning.privacy.tree import depth

    own = _skellam_rdps(max(ORDERS), l2, l1, variance)
    return np.asarray(depth(steps) * own[np.asarray(ORDERS) - 2], dtype=np.float64)


@dataclass(frozen=True)
class TreeAccountant:
    """The proven epsilon of DP-FTRL with Skellam tree noise: ``epochs`` trees of ``steps``
    rounds each, every example in one round of each tree; the Gaussian-equivalent figure beside
    it (dp-accounting's tree aggregation event, zero-out adjacency)."""

    noise_multiplier: float
    steps: int
    delta: float
    l2: float
    l1: float

    def __post_init__(self) -> None:
        _check(self.noise_multiplier, 1.0, self.delta)
        if self.steps < 1:
            raise ValueError(f"{self.steps} steps per tree: must be at least 1")

    @functools.cached_property
    def epoch_rdp(self) -> Floats:
        """One tree's RDP at each of ``ORDERS``."""
        return tree_epoch_rdp(self.steps, self.l2, self.l1, (self.noise_multiplier * self.l2) ** 2)

    def epsilon(self, epochs: int) -> float:
        """The proven epsilon at ``delta`` after ``epochs`` trees (0 for none)."""
        return _epsilon(self.epoch_rdp, epochs, self.delta)

    def gaussian_epsilon(self, epochs: int) -> float:
        """The Gaussian-equivalent epsilon after ``epochs`` trees."""
        if epochs <= 0:
            return 0.0
        accountant = rdp.RdpAccountant(ORDERS, dp_accounting.NeighboringRelation.REPLACE_SPECIAL)
        tree = dp_accounting.SingleEpochTreeAggregationDpEvent(self.noise_multiplier, self.steps)
        accountant.compose(dp_accounting.SelfComposedDpEvent(tree, epochs))
        return float(accountant.get_epsilon(self.delta))

    def epochs_within(self, budget: float, most: int) -> int:
        """The largest number of trees, at most ``most``, whose proven epsilon is within ``budget``."""
        return _rounds_within(self.epsilon, budget, most)


@dataclass(frozen=True)
class TreeRounds:
    """A ``TreeAccountant`` seen round by round, as the ledgers count: ``rounds`` rounds touch
    at most ceil(rounds / steps) trees."""

    tree: TreeAccountant

    def epsilon(self, rounds: int) -> float:
        return self.tree.epsilon(-(-rounds // self.tree.steps))

    def gaussian_epsilon(self, rounds: int) -> float:
        return self.tree.gaussian_epsilon(-(-rounds // self.tree.steps))

    def rounds_within(self, budget: float, most: int) -> int:
        return min(most, self.tree.epochs_within(budget, -(-most // self.tree.steps)) * self.tree.steps)

    @property
    def round_rdp(self) -> Floats:
        """What a data owner's ledger adds when it starts a tree (an epoch): the whole tree's
        RDP; the tree's other rounds add nothing (``budget.DataLedger``)."""
        return self.tree.epoch_rdp


def tree_noise_multiplier_for(epsilon: float, delta: float, epochs: int, steps: int, l2: float, l1: float) -> float:
    """The smallest noise multiplier, to a relative 1e-4 and rounded up, whose proven epsilon
    (``TreeAccountant``) over ``epochs`` trees of ``steps`` rounds is within (epsilon, delta);
    ValueError if even ``MOST_NOISE`` is not enough."""
    if not epsilon > 0:
        raise ValueError(f"epsilon {epsilon}: must be positive")

    def within(z: float) -> bool:
        return TreeAccountant(z, steps, delta, l2, l1).epsilon(epochs) <= epsilon

    return _smallest(within, f"epsilon {epsilon:g} at delta {delta:g} over {epochs} trees of {steps} rounds")
