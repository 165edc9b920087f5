"""A lying compute server, as a real process over TLS: every sum the model owner accepts is the
honest one, training ends with the weights of an honest run, and only the liar is ever excluded
(every other what and when runs in process: tests/inprocess/test_liars.py).

The liar is a real compute server started as ``tests/players/attacker.py --lie`` (``tests/attackers.py``): it
alters its result vector, its tag, both, or its holding report; once, in every round, only in
ordinary rounds, or only in MAC rounds. Every process is killed when a test ends, also when it
fails (the ``procs`` fixture).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.checkpoint import read_rounds
from asyncmpc.learning.training import ReferenceTrainer
from tests.helpers import ALL, OWNERS, SERVERS, Players, finish, saved_theta, start, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.process]

ROUNDS = 8


def deployment(tmp_path: Path, *, mac_rounds: str = "after-dispute", rounds: int = ROUNDS) -> Path:
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f'server_timeout = 1.5\nidle_timeout = 120.0\nmac_rounds = "{mac_rounds}"\nmac_window = 2'
    return write_config(tmp_path, owners=3, tls=True, training=training, protocol=protocol)


def run_with_liar(procs: Players, liar: str, cheat: str, *, mac_rounds: str = "after-dispute") -> dict[str, Any]:
    """Train with ``liar`` cheating as ``cheat``; return metrics.json after checking that every
    honest player finished cleanly and the final weights are those of an honest run over the
    same contributors."""
    config = deployment(procs.log_dir, mac_rounds=mac_rounds)
    out = procs.log_dir / "out"
    start(procs, config, out, [n for n in ALL if n != liar])
    start(procs, config, out, [liar], attack=["--lie", cheat])
    finish(procs, [n for n in ALL if n != liar])
    liar_exit = procs.wait(liar, 60)
    liar_log = procs.log(liar)
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    log = metrics["rounds"]
    assert len(log) == ROUNDS and all(r.get("skipped") is None for r in log), "every round has a result"
    contributors = [r["contributors"] for r in log]
    theta = ReferenceTrainer(load_config(config)).run(contributors, metrics["statistics_contributors"]).theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)  # every accepted sum was honest
    excluded = set(metrics["excluded_servers"])
    assert excluded <= {liar}, f"an honest server was excluded: {excluded}"
    if excluded:
        assert liar_exit == 2 and "excluded this server from the session" in liar_log
        marks = [r.get("excluded") for r in log]
        after = marks.index(liar) + 1 if liar in marks else 0  # 0: excluded in the statistics round
        assert all(liar not in r["servers"] for r in log[after:]), "no round after the exclusion asked the liar"
    return metrics


WHATS = ["vector", "tag", "both", "holding"]


@pytest.mark.parametrize("what", WHATS)
def test_a_liar_in_every_round_is_excluded_or_harmless(procs: Players, what: str) -> None:
    liar = SERVERS[WHATS.index(what) % 3]
    metrics = run_with_liar(procs, liar, f"{what}:every")
    log = [metrics["statistics_round"], *metrics["rounds"]]
    if what == "holding":  # a denied share looks like a lost one: never proof of a lie
        assert not metrics["excluded_servers"]
        assert any(r.get("disputed") for r in log)
    else:
        assert set(metrics["excluded_servers"]) == {liar}
        assert sum(1 for r in log if r.get("excluded") == liar) <= 1
        assert all(len(r["contributors"]) == len(OWNERS) for r in log), "no owner paid for the lie"


def test_an_owner_that_sends_two_servers_different_shares_is_named_and_no_server_is(
    tmp_path: Path, procs: Players
) -> None:
    """The owner's holders report different digests of its share in the MAC re-run: it is
    named, stays in (its input is the version its own MAC tag verifies), and no server is
    blamed for the component it made differ."""
    config = deployment(tmp_path)
    out = tmp_path / "out"
    liar = OWNERS[1]
    start(procs, config, out, [n for n in ALL if n != liar])
    start(procs, config, out, [liar], attack=["--equivocate"])
    finish(procs)
    mo_log = procs.log("model-owner")
    metrics = json.loads((out / "metrics.json").read_text())
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert not metrics["excluded_servers"] and not any(r.get("excluded") for r in log)
    assert all(r.get("skipped") is None for r in log)
    named = [r for r in log if r.get("inconsistent_owners")]
    assert named and all(r["inconsistent_owners"] == [liar] and r["mac"] for r in named)
    assert all(r.get("servers") == SERVERS for r in log), "every server stays in"
    assert f"the two servers holding a component of {liar} report different shares of it" in mo_log
    contributors = [r["contributors"] for r in metrics["rounds"]]
    theta = ReferenceTrainer(load_config(config)).run(contributors, metrics["statistics_contributors"]).theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)


def test_an_exclusion_outlasts_a_model_owner_restart_and_a_restarted_liar_stays_out(
    tmp_path: Path, procs: Players
) -> None:
    liar = SERVERS[1]
    config = deployment(tmp_path, rounds=200)
    out = tmp_path / "out"
    start(procs, config, out, [n for n in ALL if n != liar])
    start(procs, config, out, [liar], attack=["--lie", "vector:every"])
    wait_until(lambda: len(read_rounds(out)) >= 3, 120, "three rounds after the exclusion")
    procs.kill("model-owner")
    assert procs.wait(liar, 60) == 2  # it was told, and left
    before = len(read_rounds(out))
    assert before < 200, "the model owner was killed while it trained"
    start(procs, config, out, [liar], attack=["--lie", "vector:every"])  # it comes back, still lying
    start(procs, config, out, ["model-owner"])
    finish(procs, [n for n in ALL if n != liar])
    mo_log, liar_log = procs.log("model-owner"), procs.log(liar)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["excluded_servers"]) == {liar} and metrics["resumed_after"]
    log = metrics["rounds"]
    assert len(log) == 200 and all(r.get("skipped") is None for r in log)
    assert all(r["servers"] == [SERVERS[0], SERVERS[2]] for r in log[before - 1 :]), "the liar stayed out"
    assert f"excluding {liar} for the rest of the session" in mo_log
    second = liar_log[liar_log.rindex("listening on") :]  # the liar's second process
    assert "excluded from this session" in second  # the honest servers refused it
    contributors = [r["contributors"] for r in log]
    theta = ReferenceTrainer(load_config(config)).run(contributors, metrics["statistics_contributors"]).theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)
