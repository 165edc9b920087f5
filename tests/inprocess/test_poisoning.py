"""A poisoning data owner under ``[protocol] norm_bound`` (in process, every message through
the in-memory transport): its input is left out of every training round and named; every
other owner's is in, and the sums are exact (the model equals the reference trained on the
rounds' contributors). One that scales its poison down to fit the bound and proves it
honestly is accepted (what the bound cannot stop: ``scripts/bench_poisoning.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.normproof import NormSpec, context_of, prove_input
from asyncmpc.learning.training import ReferenceTrainer
from asyncmpc.learning.workload import LocalTraining
from asyncmpc.protocol.params import Params
from asyncmpc.roles import data_owner
from asyncmpc.wire import messages as m
from tests.helpers import hosts_toml, write_config
from tests.inprocess.deploy import run_deployment
from tests.poisoners import cheating_bits, poisoned_contribution

pytestmark = pytest.mark.adversarial
POISONER = "data-owner-0"
BOUND = 4.0


class Poisoner:
    """Replaces the poisoner's shares in every norm-checked round with shares of ``make(d)``
    (encoded units) and a cheating witness."""

    def __init__(self, params: Params, make: Callable[[int], np.ndarray]) -> None:
        self.params, self.make = params, make
        self.forged: dict[int, list[m.InputShare]] = {}

    def __call__(self, sender: str, to: str, msg: m.Message) -> m.Message | None:
        if sender != POISONER or not isinstance(msg, m.InputShare) or not msg.norm_digests:
            return msg
        if msg.round_no not in self.forged:
            x = self.make(int(np.prod(msg.shape)))
            spec = NormSpec(self.params.norm_bound, x.size)
            context = context_of(self.params.session, msg.round_no, POISONER, msg.input_id, spec)
            claim = spec.bound**2 // 4
            comps, digests = prove_input(spec, context, gf.from_signed(x), bits_of=cheating_bits(claim))
            self.forged[msg.round_no] = [
                m.InputShare(
                    session=msg.session,
                    round_no=msg.round_no,
                    shape=msg.shape,
                    a=comps[i].x.view(np.int64),
                    b=comps[(i + 1) % 3].x.view(np.int64),
                    input_id=msg.input_id,
                    norm_a=comps[i].payload.view(np.int64),
                    norm_b=comps[(i + 1) % 3].payload.view(np.int64),
                    norm_digests=digests,
                )
                for i in range(3)
            ]
        return self.forged[msg.round_no][self.params.servers.index(to)]


def _scaled(params: Params) -> Callable[[int], np.ndarray]:
    def make(d: int) -> np.ndarray:
        v = np.random.default_rng(1).normal(size=d)
        return np.rint(v / np.linalg.norm(v) * 0.9 * params.norm_bound * 1000).astype(np.int64)

    return make


def _just_over(params: Params) -> Callable[[int], np.ndarray]:
    def make(d: int) -> np.ndarray:
        v = np.random.default_rng(2).normal(size=d)
        return np.rint(v / np.linalg.norm(v) * 1.01 * params.norm_bound).astype(np.int64)

    return make


def _wrapping(params: Params) -> Callable[[int], np.ndarray]:
    """Huge elements whose squared norm wraps mod q (and mod 2^64) to a small value."""

    def make(d: int) -> np.ndarray:
        x = np.zeros(d, dtype=np.int64)
        x[0] = 2**32
        return x

    return make


@pytest.mark.parametrize("attack", [_scaled, _just_over, _wrapping])
def test_a_poisoning_owner_is_left_out_of_every_round_and_named(tmp_path: Path, attack: object) -> None:
    rounds = 4
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    config = load_config(write_config(tmp_path, owners=4, training=training, protocol=protocol))
    params = Params.of(config)
    outcome = run_deployment(config, tmp_path / "out", tamper=Poisoner(params, attack(params)))  # type: ignore[operator]
    metrics = outcome.metrics
    assert outcome.errors == {}
    assert metrics["norm_failed_rounds"][POISONER] == rounds
    assert all(n == 0 for o, n in metrics["norm_failed_rounds"].items() if o != POISONER)
    contributors = [r["contributors"] for r in metrics["rounds"]]
    assert all(sorted(c) == ["data-owner-1", "data-owner-2", "data-owner-3"] for c in contributors)
    theta = ReferenceTrainer(config).run(contributors, metrics["statistics_contributors"]).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)


def test_a_poisoner_fitting_the_bound_is_accepted_every_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fit:-1000``: the poisoner's contribution times -1000, then clipped to the bound and
    proved by the honest code. No round leaves it out or names it, and the model is the
    reference's with that owner's contribution times -1000 (clipped as every one is)."""
    rounds, factor = 3, -1000.0
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    config = load_config(write_config(tmp_path, owners=3, training=training, protocol=protocol))
    p = config.protocol
    poisoned = poisoned_contribution(
        f"fit:{factor:g}", p.encoded_norm_bound, p.frac_bits, data_owner._contribution, _is_poisoner
    )
    monkeypatch.setattr(data_owner, "_contribution", poisoned)
    outcome = run_deployment(config, tmp_path / "out")
    assert outcome.errors == {}
    assert all(n == 0 for n in outcome.metrics["norm_failed_rounds"].values())
    contributors = [r["contributors"] for r in outcome.metrics["rounds"]]
    assert len(contributors) == rounds and all(len(c) == 3 for c in contributors)
    reference = ReferenceTrainer(config)
    honest = reference.owners[0].contribution
    monkeypatch.setattr(reference.owners[0], "contribution", lambda *args: factor * honest(*args))
    theta = reference.run(contributors, outcome.metrics["statistics_contributors"]).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)


def _is_poisoner(work: object) -> bool:
    return isinstance(work, LocalTraining) and work.player.name == POISONER


def test_honest_owners_are_never_left_out_with_the_bound_on(tmp_path: Path) -> None:
    rounds = 6
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    config = load_config(write_config(tmp_path, owners=3, training=training, protocol=protocol))
    outcome = run_deployment(config, tmp_path / "out")
    assert outcome.errors == {}
    assert all(n == 0 for n in outcome.metrics["norm_failed_rounds"].values())
    assert all(len(r["contributors"]) == 3 for r in outcome.metrics["rounds"])
    contributors = [r["contributors"] for r in outcome.metrics["rounds"]]
    theta = ReferenceTrainer(config).run(contributors, outcome.metrics["statistics_contributors"]).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)


def test_a_server_withholding_its_norm_values_gets_no_owner_left_out_quietly(tmp_path: Path) -> None:
    """A review's attack: server-2 never sends its opened values on data-owner-1. Before, the
    other servers left the owner out at close, unnamed; now every round holds it or is disputed
    naming server-2."""
    training = 'dataset = "breast_cancer"\nrounds = 1\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    config = load_config(write_config(tmp_path, owners=4, training=training, protocol=protocol))

    def tamper(sender: str, to: str, msg: m.Message) -> m.Message | None:
        silent = sender == "server-2" and isinstance(msg, m.NormOpened) and msg.owner == "data-owner-1"
        return None if silent else msg

    outcome = run_deployment(config, tmp_path / "out", tamper=tamper)
    rows = [*outcome.metrics["rounds"], *outcome.metrics.get("disputed_rounds", [])]
    assert rows
    for r in outcome.metrics["rounds"]:
        assert "data-owner-1" in (r.get("contributors") or ()) or "server-2" in (r.get("disputed") or ()), r


def test_an_owner_withholding_its_share_from_one_server_stops_no_round(tmp_path: Path) -> None:
    """data-owner-0 never sends server-1 its share. The two servers that hold it decide it on
    their values when inputs close (they cover every component), server-1 is told to close
    its inputs ``server_timeout`` after they report that they wait only for its values, and the
    round completes on the two, as a round an owner's share did not reach everywhere does.
    Before, every round was disputed and yielded nothing."""
    rounds = 3
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    config = load_config(write_config(tmp_path, owners=4, training=training, protocol=protocol))

    def tamper(sender: str, to: str, msg: m.Message) -> m.Message | None:
        withheld = sender == POISONER and to == "server-1" and isinstance(msg, m.InputShare) and msg.norm_digests
        return None if withheld else msg

    outcome = run_deployment(config, tmp_path / "out", tamper=tamper)
    assert outcome.errors == {}
    rows = outcome.metrics["rounds"]
    assert len(rows) == rounds and all(r["test_accuracy"] is not None for r in rows)
    assert all(POISONER in r["contributors"] for r in rows)
    assert all(n == 0 for n in outcome.metrics["norm_failed_rounds"].values())
    contributors = [r["contributors"] for r in rows]
    theta = ReferenceTrainer(config).run(contributors, outcome.metrics["statistics_contributors"]).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)


def test_under_privacy_the_poisoner_is_left_out_and_every_round_carries_noise(tmp_path: Path) -> None:
    """[privacy] with norm_bound: the servers deal their noise in F_q, beside the norm-checked
    sums; the poisoner is left out of every round, the others are in, and the model is not the
    noiseless reference's (the noise is in the opened sums)."""
    rounds = 3
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 0.3\nidle_timeout = 120.0\nnorm_bound = {BOUND}"
    privacy = '\n[privacy]\nunit = "owner"\nnoise_multiplier = 1.0\nclip = 1.0\n'
    text = hosts_toml(owners=4, training=training, protocol=protocol) + privacy
    config = load_config(write_config(tmp_path, text))
    params = Params.of(config)
    outcome = run_deployment(config, tmp_path / "out", tamper=Poisoner(params, _scaled(params)))
    metrics = outcome.metrics
    assert outcome.errors == {}
    assert metrics["norm_failed_rounds"][POISONER] == rounds
    contributors = [r["contributors"] for r in metrics["rounds"]]
    assert all(sorted(c) == ["data-owner-1", "data-owner-2", "data-owner-3"] for c in contributors)
    theta = ReferenceTrainer(config).run(contributors, metrics.get("statistics_contributors")).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        assert np.all(np.isfinite(f["theta"])) and not np.allclose(f["theta"], theta, atol=1e-6)
