"""One malicious player doing one exact thing, whole deployments in process (the attacks that
need a killed process are tests/adversarial/test_processes.py's). Each server's attack asserts
the guarantee from the round log: every round has a sum, checked, equal to an honest run's bit
for bit, and no honest server is excluded or dropped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.training import ReferenceTrainer
from asyncmpc.net.memory import Tamper
from asyncmpc.wire import messages as m
from tests.attackers import Liar
from tests.helpers import write_config
from tests.inprocess.deploy import MO, run_deployment

pytestmark = pytest.mark.adversarial


def run_attack(tmp_path: Path, tamper: Tamper, rounds: int = 20) -> list[dict]:  # type: ignore[type-arg]
    """Train breast_cancer in batches of 64 under ``tamper``; return the statistics round and
    every training round, after checking what must hold whatever the attack."""
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = "server_timeout = 0.3\nidle_timeout = 120.0\nmac_window = 2"
    config = load_config(write_config(tmp_path, owners=3, training=training, protocol=protocol))
    outcome = run_deployment(config, tmp_path / "out", tamper=tamper)
    metrics = outcome.metrics
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert outcome.errors == {}, "every honest player finished cleanly"
    assert len(metrics["rounds"]) == rounds and all(r.get("skipped") is None for r in log), "every round has a sum"
    assert not metrics["excluded_servers"], "no honest server excluded"
    assert all(r["cross_checked"] or r.get("mac") for r in log), "no sum accepted unchecked"
    contributors = [r["contributors"] for r in metrics["rounds"]]
    theta = ReferenceTrainer(config).run(contributors, metrics["statistics_contributors"]).theta
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)  # every accepted sum was honest
    return log


def test_an_owner_withholding_its_share_from_one_server_forces_no_unchecked_round(tmp_path: Path) -> None:
    """Attack 7: data-owner-0 never sends server-2 its share. server-2 is told to close its
    inputs, reports what it holds, and the round is disputed and completed, checked by the
    MAC, on the two servers that hold every share; no server is dropped."""

    def withhold(sender: str, to: str, msg: m.Message) -> m.Message | None:
        return None if sender == "data-owner-0" and to == "server-2" and isinstance(msg, m.InputShare) else msg

    log = run_attack(tmp_path, withhold)
    assert any(r.get("disputed") == ["server-2"] for r in log)


def test_a_server_reporting_that_it_holds_no_one_is_outvoted(tmp_path: Path) -> None:
    """Attack 6: server-1 answers every round with an empty ``Holding``. Its report is the odd
    one out: the round is disputed and completed, checked by the MAC, on the other two;
    training goes on over every owner."""
    cheat = Liar("nothing", "every")

    def lie(sender: str, to: str, msg: m.Message) -> m.Message:
        return cheat.alter(msg) if sender == "server-1" and to == MO else msg

    log = run_attack(tmp_path, lie)
    assert all(len(r["contributors"]) == 3 for r in log), "no owner paid for the lie"
    assert any(r.get("disputed") == ["server-1"] for r in log)


def test_a_model_owner_that_goes_back_a_step_gets_nothing_from_the_owner(tmp_path: Path) -> None:
    """A model owner asks data-owner-0, from round 6 on, for step 2 again (with the current
    model, so the request's input id is new): that owner declines every such request itself,
    whatever the servers remember, and the others' rounds go on without it."""

    def go_back(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and to == "data-owner-0" and isinstance(msg, m.ModelUpdate) and msg.step >= 6:
            return dataclasses.replace(msg, step=2)
        return msg

    training = 'dataset = "breast_cancer"\nrounds = 10\nbatch_size = 64'
    config = load_config(write_config(tmp_path, owners=3, training=training, protocol="idle_timeout = 120.0"))
    outcome = run_deployment(config, tmp_path / "out", tamper=go_back)
    assert outcome.errors == {}
    rounds = outcome.metrics["rounds"]
    assert len(rounds) == 10
    assert all("data-owner-0" in r["contributors"] for r in rounds[:5])
    assert all(r["contributors"] == ["data-owner-1", "data-owner-2"] for r in rounds[5:]), rounds
