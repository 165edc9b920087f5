"""A poisoning data owner as a real process (``tests/players/attacker.py --poison``), every
player a process over TLS, with ``[protocol] norm_bound``: in every training round the poisoner
is left out and named (also one that signs two servers different digest lists: ``digests``),
every other owner is in, no round is disputed, and the sums are exact (the final weights are
those of the reference trained on the rounds' contributors). Every process is killed when a
test ends, also when it fails (the ``procs`` fixture)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.training import ReferenceTrainer
from tests.helpers import Players, finish, saved_theta, start, write_config

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.process]

ROUNDS = 5
POISONER = "data-owner-0"


def _run(procs: Players, poison: str, rounds: int = ROUNDS, bound: float = 4.0) -> dict[str, Any]:
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    protocol = f"server_timeout = 1.5\nidle_timeout = 120.0\nnorm_bound = {bound}"
    path = write_config(procs.log_dir, owners=4, tls=True, training=training, protocol=protocol)
    config = load_config(path)
    out = procs.log_dir / "out"
    names = [p.name for p in config.players.values()]
    honest = [n for n in names if n != POISONER]
    start(procs, path, out, honest)
    start(procs, path, out, [POISONER], attack=["--poison", poison])
    finish(procs, names)
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    contributors = [r["contributors"] for r in metrics["rounds"]]
    theta = ReferenceTrainer(config).run(contributors, metrics["statistics_contributors"]).theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)  # every sum exact
    return metrics


@pytest.mark.parametrize("poison", ["scale:1000", "over", "wrap", "digests"])
def test_a_poisoning_owner_process_is_left_out_and_named(procs: Players, poison: str) -> None:
    metrics = _run(procs, poison)
    assert len(metrics["rounds"]) == ROUNDS
    assert metrics["norm_failed_rounds"] == {f"data-owner-{i}": ROUNDS if i == 0 else 0 for i in range(4)}
    others = ["data-owner-1", "data-owner-2", "data-owner-3"]
    assert all(sorted(r["contributors"]) == others for r in metrics["rounds"])
    assert "data-owner-0's input failed the servers' norm check" in procs.log("model-owner")
    assert not any("disputed" in r or r.get("mac") for r in metrics["rounds"])


def test_a_server_lying_in_the_norm_check_is_proven_and_excluded_and_training_goes_on(procs: Players) -> None:
    """server-1 opens false values on a component of every owner's input and signs them; the
    other holder of that component shows the model owner the signed lie and its own copy
    (``protocol.normcourt``): server-1 is excluded after the first training round, the rounds
    go on with the two others, every owner is in every round, and the sums are exact."""
    liar = "server-1"
    training = f'dataset = "breast_cancer"\nrounds = {ROUNDS}\nbatch_size = 64'
    protocol = "server_timeout = 1.5\nidle_timeout = 120.0\nnorm_bound = 4.0"
    path = write_config(procs.log_dir, owners=3, tls=True, training=training, protocol=protocol)
    config = load_config(path)
    out = procs.log_dir / "out"
    names = [p.name for p in config.players.values()]
    start(procs, path, out, [n for n in names if n != liar])
    start(procs, path, out, [liar], attack=["--lie-norm"])
    finish(procs, [n for n in names if n != liar])
    assert procs.wait(liar, 60) == 2 and "excluded this server from the session" in procs.log(liar)
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    assert list(metrics["excluded_servers"]) == [liar]
    assert "norm values on component" in metrics["excluded_servers"][liar]
    rows = metrics["rounds"]
    assert len(rows) == ROUNDS and all(len(r["contributors"]) == 3 for r in rows)
    assert all(liar not in r.get("servers", ()) for r in rows[1:])
    contributors = [r["contributors"] for r in rows]
    theta = ReferenceTrainer(config).run(contributors, metrics["statistics_contributors"]).theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)
