"""What ``[privacy]`` means in numbers, computed alike by the model owner and every compute
server from the same hosts.toml: the noise multiplier, the noise each server deals, the
accountant and the budget.

Calibration (SECURITY.md, "Differential privacy"): the released sum must carry noise of
standard deviation ``sigma = noise_multiplier * sensitivity`` that the model owner cannot
remove *even with one compute server's help*. Each of the k servers a round runs on deals
independent Skellam noise of variance ``sigma^2 / (k - 1)``: a colluding server knows its own
part, and the k - 1 others still add up to sigma^2 (Skellam is closed under summation). With
three servers the opened sum carries 1.5 sigma^2, with two 2 sigma^2; the model owner alone
faces that larger variance. A server computes the variance itself from its own copy of the
configuration: the model owner only says which servers deal (``OpenRound.servers``).

The epsilon calibrated to and enforced is the proven one for the Skellam noise run, with the
Gaussian-equivalent figure beside it (``accountant.SkellamAccountant``). It depends on the
sensitivity in fixed-point units, so on the contribution's size: calibrating to ``[privacy]
epsilon`` needs the size (``noise_multiplier(config, size)``, ``plan_for``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asyncmpc.config import Config, PrivacySettings
from asyncmpc.errors import ConfigError
from asyncmpc.learning.privacy.tree import depth

if TYPE_CHECKING:  # imported when used: dp-accounting takes 2 s to import
    from asyncmpc.learning.privacy.accountant import SkellamAccountant, TreeRounds

__all__ = ["NOISE_TAIL", "PrivacyPlan", "noise_multiplier", "plan_for", "rounded_sensitivity", "sensitivity"]

NOISE_TAIL = 64.0
"""Noise beyond this many standard deviations is treated as impossible (its probability is
below 2^-2900): the ring must hold the sum plus this much noise without wrapping."""


@dataclass(frozen=True)
class PrivacyPlan:
    settings: PrivacySettings
    noise_multiplier: float
    sigma: float
    """The noise standard deviation, in units of the fixed point, that the model owner cannot
    remove with one server's help."""
    sampling_rate: float
    rounds: int
    """The rounds the budget allows (``[training] rounds`` when there is no budget)."""
    l2: float
    """The L2 sensitivity in units of the fixed point (``sensitivity``): sigma over the multiplier."""
    l1: float
    """The L1 sensitivity in the same units."""

    def dealer_variance(self, dealers: int) -> float:
        """The variance each of ``dealers`` servers adds (see the module docstring)."""
        if dealers < 2:
            raise ValueError(f"{dealers} noise dealer(s): a round needs two servers")
        return self.sigma * self.sigma / (dealers - 1)

    def accountant(self) -> SkellamAccountant | TreeRounds:
        """The proven epsilon's accountant (``epsilon``, by rounds), with the Gaussian-equivalent
        figure beside it (``gaussian_epsilon``): the sampled mechanism's, or the tree's."""
        from asyncmpc.learning.privacy.accountant import SkellamAccountant, TreeAccountant, TreeRounds

        s = self.settings
        if s.mechanism == "tree":
            return TreeRounds(TreeAccountant(self.noise_multiplier, s.epoch_steps, s.delta, self.l2, self.l1))
        return SkellamAccountant(self.noise_multiplier, self.sampling_rate, s.delta, self.l2, self.l1)


def rounded_sensitivity(bound: float, size: int, frac_bits: int, roundings: int = 1) -> tuple[float, float]:
    """The L2 and L1 sensitivity, in units of the fixed point, of a contribution clipped to L2
    norm ``bound`` and then encoded by rounding each of its ``size`` coordinates to the nearest
    multiple of 2^-frac_bits: rounding moves each coordinate by at most half a unit, so the L2
    norm grows by at most sqrt(size) / 2 units per rounding (the widening the distributed
    discrete Gaussian and Skellam papers make for their rounding), and L1 <= sqrt(size) * L2.
    ``roundings = 2`` when the neighbouring inputs are two rounded vectors (an owner's sum with
    and without one example), 1 when one side is absent (an owner's whole contribution)."""
    l2 = bound * 2.0**frac_bits + roundings * math.sqrt(size) / 2
    return l2, math.sqrt(size) * l2


def sensitivity(config: Config, size: int) -> tuple[float, float]:
    """The L2 and L1 sensitivity, in units of the fixed point, of the released sum of
    contributions of ``size`` elements: one unit's clipped part, rounded twice for an example
    (its owner's sum with and without it), once for an owner (``rounded_sensitivity``)."""
    p = config.privacy
    if p is None:
        raise ValueError("no [privacy] table")
    return rounded_sensitivity(p.clip, size, config.protocol.frac_bits, 2 if p.unit == "example" else 1)


def noise_multiplier(config: Config, size: int) -> float:
    """``[privacy] noise_multiplier``, or the smallest whose proven epsilon keeps ``[training]
    rounds`` rounds of contributions of ``size`` elements within (epsilon, delta) (30 ms);
    ConfigError if no noise multiplier can."""
    p = config.privacy
    if p is None:
        raise ValueError("no [privacy] table")
    if p.noise_multiplier:
        return p.noise_multiplier
    from asyncmpc.learning.privacy import accountant as a

    rounds = config.training.rounds
    l2, l1 = sensitivity(config, size)
    tree = p.mechanism == "tree"
    trees = -(-rounds // p.epoch_steps)
    most = a.TreeAccountant(a.MOST_NOISE, p.epoch_steps, p.delta, l2, l1).epsilon(trees) if tree else None
    if most is None:
        most = a.SkellamAccountant(a.MOST_NOISE, p.rate, p.delta, l2, l1).epsilon(rounds)
    if most > p.epsilon:
        raise ConfigError(
            f"{config.path}: [privacy] epsilon {p.epsilon:g}: no noise multiplier keeps {rounds} rounds within "
            f"it at delta {p.delta:g}; raise epsilon or delta"
        )
    if tree:
        return a.tree_noise_multiplier_for(p.epsilon, p.delta, trees, p.epoch_steps, l2, l1)
    return a.skellam_noise_multiplier_for(p.epsilon, p.delta, rounds, p.rate, l2, l1)


def plan_for(config: Config, size: int, multiplier: float | None = None) -> PrivacyPlan:
    """The plan for contributions of ``size`` elements (``multiplier``: the noise multiplier,
    if computed already for this size); ConfigError if the budget cannot hold one round, or the
    ring cannot hold the noise."""
    p = config.privacy
    if p is None:
        raise ValueError("no [privacy] table")
    rounds, rate = config.training.rounds, p.rate
    z = multiplier if multiplier is not None else noise_multiplier(config, size)
    l2, l1 = sensitivity(config, size)
    allowed = rounds
    plan = PrivacyPlan(p, z, z * l2, rate, rounds, l2, l1)
    if p.epsilon:  # the accountant (and dp-accounting, 2 s to import) only with a budget to keep
        allowed = plan.accountant().rounds_within(p.epsilon, rounds)
        if allowed == 0:
            raise ConfigError(
                f"{config.path}: [privacy] noise_multiplier {z:g}: one round already spends more than "
                f"epsilon {p.epsilon:g}; raise noise_multiplier or epsilon"
            )
    sigma = z * l2
    room = 2.0**62  # encoding keeps the contributions' sum within half the ring under [privacy]
    nodes = 1 if p.mechanism != "tree" else 1 + depth(p.epoch_steps)  # a tree round: one node in, some out
    if NOISE_TAIL * sigma * math.sqrt(2.0 * nodes) >= room:
        raise ConfigError(
            f"{config.path}: [privacy] noise of standard deviation {sigma:.3g} (fixed point) does not fit "
            f"the ring; lower [protocol] frac_bits or [privacy] clip"
        )
    return dataclasses.replace(plan, rounds=allowed)
