"""A lying compute server or an equivocating data owner, in process: every player's real code
over the in-process transport, the lie made in flight (``Hub`` tamper). Every sum the model
owner accepts is the honest one, training ends with the weights of an honest run, and only the
liar is ever excluded. (tests/integration/test_cheating.py runs a liar as a process over TLS.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asyncmpc.config import Config, load_config
from asyncmpc.learning.training import ReferenceTrainer
from asyncmpc.wire import messages as m
from tests.attackers import Liar, equivocate
from tests.helpers import write_config
from tests.inprocess.deploy import MO, Outcome, run_deployment

pytestmark = pytest.mark.adversarial

ROUNDS = 8
SERVERS = ["server-0", "server-1", "server-2"]
WHATS = ["vector", "tag", "both", "holding"]


def deployment(tmp_path: Path, *, mac_rounds: str = "after-dispute") -> Config:
    training = f'dataset = "breast_cancer"\nrounds = {ROUNDS}\nbatch_size = 64'
    protocol = f'server_timeout = 1.5\nidle_timeout = 120.0\nmac_rounds = "{mac_rounds}"\nmac_window = 2'
    return load_config(write_config(tmp_path, owners=3, training=training, protocol=protocol))


def honest_theta(config: Config, metrics: dict[str, Any]) -> np.ndarray:
    contributors = [r["contributors"] for r in metrics["rounds"]]
    return ReferenceTrainer(config).run(contributors, metrics["statistics_contributors"]).theta


def run_with_liar(tmp_path: Path, liar: str, what: str, when: str, *, mac_rounds: str = "after-dispute") -> dict:  # type: ignore[type-arg]
    """Train with ``liar`` altering what it sends the model owner; check what holds whatever
    the lie: every round has a result, the weights are an honest run's, only the liar is out."""
    config = deployment(tmp_path, mac_rounds=mac_rounds)
    cheat = Liar(what, when)

    def lie(sender: str, to: str, msg: m.Message) -> m.Message:
        return cheat.alter(msg) if sender == liar and to == MO else msg

    outcome: Outcome = run_deployment(config, tmp_path / "out", tamper=lie)
    metrics = outcome.metrics
    log = metrics["rounds"]
    assert len(log) == ROUNDS and all(r.get("skipped") is None for r in log), "every round has a result"
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], honest_theta(config, metrics), atol=1e-9, rtol=0)
    excluded = set(metrics["excluded_servers"])
    assert excluded <= {liar}, f"an honest server was excluded: {excluded}"
    assert set(outcome.errors) <= {liar}
    if excluded:
        assert "excluded this server from the session" in str(outcome.errors[liar])
        marks = [r.get("excluded") for r in log]
        after = marks.index(liar) + 1 if liar in marks else 0  # 0: excluded in the statistics round
        assert all(liar not in r["servers"] for r in log[after:]), "no round after the exclusion asked the liar"
    return metrics


@pytest.mark.parametrize("what", WHATS)
def test_a_liar_in_every_round_is_excluded_or_harmless(tmp_path: Path, what: str) -> None:
    liar = SERVERS[WHATS.index(what) % 3]
    metrics = run_with_liar(tmp_path, liar, what, "every")
    log = [metrics["statistics_round"], *metrics["rounds"]]
    if what == "holding":  # a denied share looks like a lost one: never proof of a lie
        assert not metrics["excluded_servers"]
        assert any(r.get("disputed") for r in log)
    else:
        assert set(metrics["excluded_servers"]) == {liar}
        assert sum(1 for r in log if r.get("excluded") == liar) <= 1
        assert all(len(r["contributors"]) == 3 for r in log), "no owner paid for the lie"


@pytest.mark.parametrize("what", WHATS)
def test_a_liar_in_ordinary_rounds_only_costs_re_runs_and_is_never_excluded(tmp_path: Path, what: str) -> None:
    liar = SERVERS[(WHATS.index(what) + 1) % 3]
    metrics = run_with_liar(tmp_path, liar, what, "ordinary")
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert not metrics["excluded_servers"]
    disputed = [r for r in log if r.get("disputed")]
    assert disputed and all(r["mac"] for r in disputed), "each disputed round ends as a MAC round"
    assert any(r.get("mac") and not r.get("disputed") for r in log), "MAC rounds stay on after a dispute"


@pytest.mark.parametrize("what", WHATS)
def test_a_liar_in_mac_rounds_only_is_excluded_at_its_first_lie(tmp_path: Path, what: str) -> None:
    liar = SERVERS[(WHATS.index(what) + 2) % 3]
    metrics = run_with_liar(tmp_path, liar, what, "mac", mac_rounds="always")
    log = [metrics["statistics_round"], *metrics["rounds"]]
    if what == "holding":  # the other two complete every round: no one pays for the denial
        assert not metrics["excluded_servers"]
        assert all(len(r["contributors"]) == 3 and liar not in r["servers"] for r in log)
    else:
        assert set(metrics["excluded_servers"]) == {liar}
        assert all(len(r["contributors"]) == 3 for r in log)


@pytest.mark.parametrize("what", WHATS)
def test_a_liar_that_lies_once_costs_one_re_run(tmp_path: Path, what: str) -> None:
    liar = SERVERS[WHATS.index(what) % 3]
    metrics = run_with_liar(tmp_path, liar, what, "once")
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert not metrics["excluded_servers"]  # its lie was in an ordinary round: no proof
    assert len([r for r in log if r.get("disputed")]) <= 1


def test_an_owner_that_sends_two_servers_different_shares_is_named_and_no_server_is(tmp_path: Path) -> None:
    """The owner's two holders of its vector component get different copies: the MAC re-run
    names it, it stays in (its input is the version its own MAC tag verifies), and no server
    is blamed for the component it made differ."""
    config = deployment(tmp_path)
    liar = "data-owner-1"

    def equivocating(sender: str, to: str, msg: m.Message) -> m.Message:
        return equivocate(to, msg) if sender == liar else msg

    outcome = run_deployment(config, tmp_path / "out", tamper=equivocating)
    metrics = outcome.metrics
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert outcome.errors == {}
    assert not metrics["excluded_servers"] and not any(r.get("excluded") for r in log)
    assert all(r.get("skipped") is None for r in log)
    named = [r for r in log if r.get("inconsistent_owners")]
    assert named and all(r["inconsistent_owners"] == [liar] and r["mac"] for r in named)
    assert all(r.get("servers") == SERVERS for r in log), "every server stays in"
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], honest_theta(config, metrics), atol=1e-9, rtol=0)
