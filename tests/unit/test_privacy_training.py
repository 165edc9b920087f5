"""[privacy] from hosts.toml to a round's contribution and the model owner's ledger (no I/O
but the ledger file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError, OutputError
from asyncmpc.learning.data import load_split
from asyncmpc.learning.optim import clip
from asyncmpc.learning.privacy.accountant import ORDERS, Accountant
from asyncmpc.learning.privacy.budget import LEDGER, Budget
from asyncmpc.learning.privacy.plan import plan_for
from asyncmpc.learning.privacy.sampling import poisson_sample, sampling_key
from asyncmpc.learning.training import OwnerWork, ReferenceTrainer, contribution_size, expected_units
from tests.helpers import hosts_toml


def text(privacy: str, training: str) -> str:
    csv = {f"data-owner-{i}": 'csv = "a.csv"' for i in range(3)} if "csv" in training else {}
    return hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=training, extra=csv) + "\n[privacy]\n" + privacy


def config(privacy: str, training: str = 'dataset = "breast_cancer"\nrounds = 20'):  # type: ignore[no-untyped-def]
    return parse_config(text(privacy, training))


@pytest.mark.parametrize(
    ("privacy", "training", "message"),
    [
        ("clip = 1.0", "", "give epsilon .* or noise_multiplier"),
        ("epsilon = 1.0\nsampling_rate = 0", "", "sampling_rate: must be above 0"),
        ('epsilon = 1.0\nunit = "everyone"', "", "unit: 'everyone' is not one of example, owner"),
        ("epsilon = 1.0", "batch_size = 10", "batch_size: with \\[privacy\\]"),
        ("epsilon = 1.0", "local_steps = 3", "local_steps: with \\[privacy\\]"),
        ("epsilon = 1.0", 'weighting = "examples"', 'weighting: "examples" opens the number of examples'),
        ("epsilon = 1.0", 'dataset = "csv"\nclasses = ["a", "b"]', "examples: give the public total"),
        ("epsilon = 1.0", 'dataset = "synthetic"', 'synthetic benchmarks take unit = "owner"'),
        ("epsilon = 1.0", 'dataset = "synthetic"\naggregation = "plain"', "needs secure aggregation"),
        ("epsilon = 1.0\ndelta = 0.9", "", "delta: 0.9 is outside"),
        ("epsilon = 1.0\nnoise = 3", "", "unknown key 'noise'"),
    ],
)
def test_a_broken_privacy_table_is_refused_naming_the_key(privacy: str, training: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(text(privacy, training))


def test_defaults_and_what_the_plan_derives() -> None:
    cfg = config("epsilon = 3.0")
    p = cfg.privacy
    assert p is not None and (p.unit, p.delta, p.clip, p.rate) == ("example", 1e-5, 1.0, 0.1)
    assert config('epsilon = 3.0\nunit = "owner"').privacy.rate == 1.0  # type: ignore[union-attr]
    plan = plan_for(cfg, 31)
    # the calibrated multiplier spends the budget over the configured rounds, and not more
    assert (
        Accountant(plan.noise_multiplier, 0.1, 1e-5).epsilon(20)
        <= 3.0
        < Accountant(plan.noise_multiplier * 0.99, 0.1, 1e-5).epsilon(20)
    )
    assert plan.rounds == 20
    # sigma in fixed-point units: the multiplier times the clip bound widened for two roundings
    assert plan.sigma == pytest.approx(plan.noise_multiplier * (2.0**16 + np.sqrt(31)))
    assert plan.dealer_variance(3) == pytest.approx(plan.sigma**2 / 2)
    assert plan.dealer_variance(2) == pytest.approx(plan.sigma**2)


def test_a_budget_that_cannot_hold_one_round_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"one round already spends more than epsilon 0\.01"):
        plan_for(config("epsilon = 0.01\nnoise_multiplier = 0.5"), 31)


def test_the_sparser_renyi_orders_give_every_integer_orders_epsilon() -> None:
    from dp_accounting.rdp import rdp_privacy_accountant as ra

    every = (*range(2, 257), 512, 1024)
    for z, q, rounds in [(0.8, 0.01, 1000), (1.1, 0.1, 100), (4.0, 1.0, 50), (0.6, 0.2, 5)]:
        a = Accountant(z, q, 1e-5).epsilon(rounds)
        rdp = ra._compute_rdp_poisson_subsampled_gaussian(q, z, every)  # the same library, every order
        b, _ = ra.compute_epsilon(every, rounds * np.asarray(rdp), 1e-5)
        assert a == pytest.approx(b, rel=1e-3), (z, q, rounds)
    assert len(ORDERS) < 80


def test_the_ledger_counts_before_each_release_and_survives_a_restart(tmp_path: Path) -> None:
    plan = plan_for(config("epsilon = 2.0\nnoise_multiplier = 2.0"), 31)
    budget = Budget(plan, tmp_path)
    spent = []
    while budget.allows_another():
        budget.spend()
        spent.append(budget.epsilon)
    assert spent == sorted(spent) and spent[-1] <= 2.0
    assert Accountant(2.0, 0.1, 1e-5).epsilon(len(spent) + 1) > 2.0  # one more would exceed it
    again = Budget(plan, tmp_path)  # a restarted model owner
    assert again.releases == len(spent) and not again.allows_another()
    assert Budget(plan, tmp_path, fresh=True).releases == 0
    (tmp_path / LEDGER).write_text("{")
    with pytest.raises(OutputError, match="cannot read the privacy ledger"):
        Budget(plan, tmp_path)


def test_an_example_level_contribution_is_the_sum_of_clipped_gradients_over_the_sample() -> None:
    cfg = config("epsilon = 3.0\nclip = 0.5\nsampling_rate = 0.3")
    split = load_split(cfg)
    work = OwnerWork(cfg, 0, split.owners[0], split.classes, bytes(range(16)))
    assert contribution_size(cfg, work.model) == work.model.size  # no loss, no count
    theta = np.random.default_rng(1).normal(size=work.model.size)
    mean, scale = split.owners[0].x.mean(axis=0), split.owners[0].x.std(axis=0) + 1e-9
    got = work.contribution(theta, mean, scale, 7)
    rows = poisson_sample(len(split.owners[0].y), 0.3, bytes(range(16)), 7)
    x = (split.owners[0].x[rows] - mean) / scale
    want = sum(
        clip(work.model.gradient(theta, x[i : i + 1], split.owners[0].y[rows][i : i + 1])[1], 0.5)
        for i in range(len(rows))
    )
    np.testing.assert_allclose(got, want)
    assert np.array_equal(got, work.contribution(theta, mean, scale, 7))  # the same round: the same sample
    assert not np.array_equal(got, work.contribution(theta, mean, scale, 8))


def test_an_owner_level_contribution_is_clipped_whole_or_zero_when_not_sampled() -> None:
    cfg = config('epsilon = 3.0\nunit = "owner"\nclip = 0.01\nsampling_rate = 0.5')
    split = load_split(cfg)
    work = OwnerWork(cfg, 0, split.owners[0], split.classes, bytes(range(16)))
    theta = np.zeros(work.model.size)
    mean, scale = np.zeros(work.model.n_features), np.ones(work.model.n_features) * 100
    taken = [bool(poisson_sample(1, 0.5, bytes(range(16)), r).size) for r in range(1, 41)]
    assert 5 < sum(taken) < 35
    for r, sampled in enumerate(taken, start=1):
        c = work.contribution(theta, mean, scale, r)
        if sampled:
            assert np.linalg.norm(c) == pytest.approx(0.01)
        else:
            assert not c.any()
    assert expected_units(cfg, 999) == 0.5 * 3  # owners, not examples


def test_sampling_keys_come_from_the_tls_key_when_there_is_one(tmp_path: Path) -> None:
    from asyncmpc.config import load_config
    from tests.helpers import write_config

    path = write_config(tmp_path, owners=3, tls=True, training='dataset = "breast_cancer"')
    path.write_text(path.read_text() + "\n[privacy]\nepsilon = 1.0\n")
    cfg = load_config(path)
    a, b = sampling_key(cfg, "data-owner-0"), sampling_key(cfg, "data-owner-1")
    assert len(a) == 16 and a == sampling_key(cfg, "data-owner-0") and a != b
    plain = config("epsilon = 1.0")
    assert sampling_key(plain, "data-owner-0") != sampling_key(plain, "data-owner-0")  # fresh without TLS


def test_the_central_dp_reference_learns_and_its_noise_has_the_plans_scale() -> None:
    cfg = config("epsilon = 8.0\nsampling_rate = 0.3", 'dataset = "breast_cancer"\nrounds = 30\nlearning_rate = 0.1')
    trainer = ReferenceTrainer(cfg, quantize=False)
    noise = trainer._central_noise()
    draws = np.concatenate([noise() for _ in range(200)])
    sigma = plan_for(cfg, trainer.state.model.size).sigma / 2.0**16
    assert draws.std() == pytest.approx(sigma, rel=0.05)
    st = trainer.run()
    assert trainer.history[-1]["test_accuracy"] > 0.9
    assert st.theta.shape == (trainer.state.model.size,)
