"""[privacy] from hosts.toml to a round's contribution and the model owner's ledger (no I/O
but the ledger file)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError, OutputError
from asyncmpc.learning.data import load_split
from asyncmpc.learning.models import BuiltModel
from asyncmpc.learning.optim import clip
from asyncmpc.learning.privacy.accountant import ORDERS, Accountant, SkellamAccountant
from asyncmpc.learning.privacy.budget import LEDGER, Budget, DataLedger
from asyncmpc.learning.privacy.plan import plan_for
from asyncmpc.learning.privacy.sampling import poisson_bits
from asyncmpc.learning.training import OwnerWork, ReferenceTrainer, contribution_size, expected_units
from tests.helpers import hosts_toml

Floats = NDArray[np.float64]


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
    smaller = SkellamAccountant(plan.noise_multiplier * 0.99, 0.1, 1e-5, plan.l2, plan.l1)
    assert plan.accountant().epsilon(20) <= 3.0 < smaller.epsilon(20)
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
    assert plan.accountant().epsilon(len(spent) + 1) > 2.0  # one more would exceed it
    again = Budget(plan, tmp_path)  # a restarted model owner
    assert again.releases == len(spent) and not again.allows_another()
    assert Budget(plan, tmp_path, fresh=True).releases == 0
    (tmp_path / LEDGER).write_text("{")
    with pytest.raises(OutputError, match="cannot read the privacy ledger"):
        Budget(plan, tmp_path)


def test_a_data_owners_ledger_spans_runs_and_adds_up_rdp_across_settings(tmp_path: Path) -> None:
    """The owner's own ledger: kept per data set across runs (a second run, or a model owner
    that starts afresh, continues its count), declining once one more release would exceed
    the budget; a run under other settings adds its own RDP; two processes on the same data
    add up; a ledger kept for another unit is refused."""
    plan = plan_for(config("epsilon = 2.0\nnoise_multiplier = 2.0"), 31)
    data = b"\x01" * 32
    first = DataLedger(plan, tmp_path / "ledgers", data)
    assert first.epsilon == 0.0
    for _ in range(5):
        assert first.spend() is None
    second = DataLedger(plan, tmp_path / "ledgers", data)  # another run on the same data
    assert second.releases == 5 and second.epsilon == pytest.approx(plan.accountant().epsilon(5), rel=1e-9)
    assert first.spend() is None and second.spend() is None  # two processes at once: neither loses the other's
    assert second.releases == 7 and DataLedger(plan, tmp_path / "ledgers", data).releases == 7
    while second.spend() is None:
        pass
    assert second.epsilon <= 2.0 < plan.accountant().epsilon(second.releases + 1)
    assert second.releases == plan.accountant().rounds_within(2.0, 10_000)
    assert DataLedger(plan, tmp_path / "ledgers", b"\x02" * 32).releases == 0  # other data, its own
    noisier = plan_for(config("epsilon = 4.0\nnoise_multiplier = 8.0"), 31)
    later = DataLedger(noisier, tmp_path / "ledgers", data)  # a later run with more noise
    assert later.spend() is None
    spent = second.releases * plan.accountant().round_rdp + noisier.accountant().round_rdp
    np.testing.assert_allclose(later.rdp, spent, rtol=1e-12)
    assert later.releases == second.releases + 1 and later.epsilon > second.epsilon
    owners = plan_for(config('epsilon = 50.0\nnoise_multiplier = 2.0\nunit = "owner"'), 31)
    with pytest.raises(OutputError, match="kept for \\[privacy\\] unit = 'example'"):
        DataLedger(owners, tmp_path / "ledgers", data)
    later.path.write_text("{")
    with pytest.raises(OutputError, match="cannot read the privacy ledger"):
        DataLedger(plan, tmp_path / "ledgers", data)


def test_an_owners_data_has_one_fingerprint_whatever_the_row_order_or_the_label_names() -> None:
    from asyncmpc.learning.workload import LocalTraining

    cfg = config("epsilon = 1.0")
    owner = LocalTraining(cfg, cfg.player("data-owner-0"))
    before = owner.fingerprint()
    data = owner.work.data
    order = np.random.default_rng(3).permutation(len(data.y))
    owner.work.data = dataclasses.replace(data, x=data.x[order], y=1 - data.y[order])
    assert owner.fingerprint() == before
    owner.work.data = dataclasses.replace(data, x=data.x[1:], y=data.y[1:])
    assert owner.fingerprint() != before


class Keys:
    """A random source that hands out known sample keys and counts them."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    def __call__(self, n: int) -> bytes:
        key = bytes([len(self.given) + 1]) * n
        self.given.append(key)
        return key


class Counted:
    """A model whose gradient calls are counted (the work an owner does)."""

    def __init__(self, model: BuiltModel) -> None:
        self.model, self.calls = model, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def gradient(self, theta: Floats, x: Floats, y: NDArray[np.int64]) -> tuple[float, Floats]:
        self.calls += 1
        return self.model.gradient(theta, x, y)


def test_an_example_level_contribution_is_the_sum_of_clipped_gradients_over_a_fresh_sample() -> None:
    cfg = config("epsilon = 3.0\nclip = 0.5\nsampling_rate = 0.3")
    split = load_split(cfg)
    keys = Keys()
    work = OwnerWork(cfg, 0, split.owners[0], split.classes, keys)
    assert contribution_size(cfg, work.model) == work.model.size  # no loss, no count
    theta = np.random.default_rng(1).normal(size=work.model.size)
    mean, scale = split.owners[0].x.mean(axis=0), split.owners[0].x.std(axis=0) + 1e-9
    got = work.contribution(theta, mean, scale, 7)
    rows = np.flatnonzero(poisson_bits(len(split.owners[0].y), 0.3, keys.given[0]))
    x = (split.owners[0].x[rows] - mean) / scale
    want = sum(
        clip(work.model.gradient(theta, x[i : i + 1], split.owners[0].y[rows][i : i + 1])[1], 0.5)
        for i in range(len(rows))
    )
    np.testing.assert_allclose(got, want)
    again = work.contribution(theta, mean, scale, 7)  # the same step asked again: another sample
    assert len(keys.given) == 2 and keys.given[0] != keys.given[1] and not np.array_equal(got, again)


def test_an_owner_level_contribution_is_clipped_whole_or_zero_when_not_sampled() -> None:
    cfg = config('epsilon = 3.0\nunit = "owner"\nclip = 0.01\nsampling_rate = 0.5')
    split = load_split(cfg)
    keys = Keys()
    work = OwnerWork(cfg, 0, split.owners[0], split.classes, keys)
    theta = np.zeros(work.model.size)
    mean, scale = np.zeros(work.model.n_features), np.ones(work.model.n_features) * 100
    taken = []
    for _ in range(40):
        c = work.contribution(theta, mean, scale, 3)  # one step, asked again and again
        taken.append(bool(poisson_bits(1, 0.5, keys.given[-1])[0]))
        if taken[-1]:
            assert np.linalg.norm(c) == pytest.approx(0.01)
        else:
            assert not c.any()
    assert 5 < sum(taken) < 35
    assert expected_units(cfg, 999) == 0.5 * 3  # owners, not examples


@pytest.mark.parametrize("unit", ["example", "owner"])
def test_an_owner_does_the_same_work_whether_it_sampled_anything_or_not(unit: str) -> None:
    """Timing says nothing about who took part: as many gradients with an empty sample as with
    a full one (the answer time itself is measured by the benchmark, not here)."""
    calls = {}
    for rate in (1e-9, 1.0):  # (almost) nothing sampled, everything sampled
        cfg = config(f'epsilon = 3.0\nunit = "{unit}"\nsampling_rate = {rate}')
        split = load_split(cfg)
        work = OwnerWork(cfg, 0, split.owners[0], split.classes)
        counted = Counted(work.model)
        work.model = counted  # type: ignore[assignment]
        theta = np.zeros(counted.size)
        mean, scale = np.zeros(counted.n_features), np.ones(counted.n_features)
        work.contribution(theta, mean, scale, 1)
        calls[rate] = counted.calls
    assert calls[1e-9] == calls[1.0] > 0


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


def test_more_data_owners_than_max_owners_are_refused_at_start() -> None:
    with pytest.raises(ConfigError, match=r"max_owners: 2, but \[players\] lists 3 data owners"):
        parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], protocol="max_owners = 2"))


def test_the_ledger_folder_is_relative_to_the_hosts_toml(tmp_path: Path) -> None:
    path = tmp_path / "deploy" / "hosts.toml"
    cfg = parse_config(text("epsilon = 1.0", 'dataset = "breast_cancer"'), str(path))
    assert cfg.privacy is not None and Path(cfg.privacy.ledger_dir) == tmp_path / "deploy" / "privacy-ledger"
    cfg = parse_config(text('epsilon = 1.0\nledger_dir = "/srv/ledgers"', 'dataset = "breast_cancer"'), str(path))
    assert cfg.privacy is not None and cfg.privacy.ledger_dir == "/srv/ledgers"


def test_the_deployed_encoding_keeps_half_the_ring_for_the_noise() -> None:
    """An owner's shares under [privacy] take values for 2 * max_owners terms (as SECURITY.md
    says): a value that fits max_owners terms but not twice as many is refused."""
    from asyncmpc.crypto.ring import max_abs_value
    from asyncmpc.crypto.rss import InputSharer
    from asyncmpc.errors import EncodingError
    from asyncmpc.protocol.params import Params
    from asyncmpc.protocol.shares import contribution_shares

    private = Params.of(config("epsilon = 1.0"))
    plain = Params.of(parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003])))
    assert private.input_terms == 2 * plain.input_terms == 2 * plain.max_owners
    value = np.array([0.9 * max_abs_value(plain.frac_bits, plain.max_owners)])
    contribution_shares(plain, 1, value, InputSharer())
    with pytest.raises(EncodingError):
        contribution_shares(private, 1, value, InputSharer())


def test_what_an_owner_answers_under_privacy_never_depends_on_its_data_but_through_the_noise(tmp_path: Path) -> None:
    """A model owner that picks the scaling so that one example's standardised feature
    overflows (scale t / DBL_MAX: |x_j| > t gives inf, its gradient NaN) must not learn
    whether any example exceeds t from whether the owner declines: every answer is shares of a
    finite vector within the encoding's range, whatever the data and the model sent."""
    from asyncmpc.roles.data_owner import _Owner
    from asyncmpc.wire import messages as m

    privacy = f'epsilon = 8.0\nsampling_rate = 0.1\nledger_dir = "{tmp_path}"'
    cfg = parse_config(text(privacy, 'dataset = "breast_cancer"\nrounds = 60'), str(tmp_path / "hosts.toml"))
    owner = _Owner(cfg, "data-owner-0", False, os.urandom)
    work = owner.work.work  # type: ignore[attr-defined]
    d, j = work.model.size, 3
    largest = float(np.abs(work.data.x[:, j]).max())
    for step, t in enumerate((largest / 2, largest * 2, 1e-300, 1e300), start=1):
        mean, scale = np.zeros(d - 1), np.ones(d - 1)
        scale[j] = t / np.finfo(np.float64).max
        theta = np.full(d, 1e-3)
        msg = m.ModelUpdate(session=cfg.session, round_no=step, theta=theta, mean=mean, scale=scale, step=step)
        out = owner.shares_for(msg)
        assert not out.declined, (t, out.declined)
        assert all(isinstance(s.msg, m.InputShare) for s in out.sends)
    bad = m.ModelUpdate(
        session=cfg.session, round_no=9, theta=np.full(d, np.nan), mean=np.zeros(d - 1), scale=np.ones(d - 1), step=9
    )
    out = owner.shares_for(bad)  # a model that is not finite is refused whatever the data: no value named
    assert out.declined and "not finite" in out.declined


def test_an_owner_signs_one_norm_digest_list_per_round_and_nonce(tmp_path: Path) -> None:
    """An attack review's: a model owner that sends the same norm-checked request (round and
    nonce) twice would get two freshly proven lists signed under one statement, which the
    servers take as the owner's equivocation. The owner answers the first and declines the
    second; the same round under a new nonce (a resumed model owner's) is answered."""
    from asyncmpc.roles.data_owner import _Owner
    from asyncmpc.wire import messages as m

    cfg = parse_config(
        hosts_toml(
            3, ports=[9000, 9001, 9002, 9003], protocol="norm_bound = 4.0", training='dataset = "breast_cancer"'
        ),
        str(tmp_path / "hosts.toml"),
    )
    owner = _Owner(cfg, "data-owner-0", False, os.urandom)
    d = owner.work.features + 1
    msg = m.ModelUpdate(
        session=cfg.session, round_no=1, theta=np.zeros(d), mean=np.zeros(d - 1), scale=np.ones(d - 1), norm=bytes(16)
    )
    first = owner.shares_for(msg)
    assert not first.declined and all(s.msg.norm_digests for s in first.sends if isinstance(s.msg, m.InputShare))
    again = owner.shares_for(msg)
    assert again.declined and "once already" in again.declined
    fresh = owner.shares_for(dataclasses.replace(msg, norm=b"\x01" * 16))
    assert not fresh.declined
