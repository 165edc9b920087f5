"""Attacks and faults with every player a real process over loopback TCP: each test is one
attack (or an ordinary crash that used to act like one) and asserts the guarantee from the
round log. Every process is killed by PID when the test ends, also when it fails."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.checkpoint import read_rounds
from asyncmpc.learning.training import ReferenceTrainer
from tests.helpers import Players, wait_until, write_config

pytestmark = [pytest.mark.adversarial, pytest.mark.integration, pytest.mark.faults, pytest.mark.process]


def deployment(tmp_path: Path, owners: int, rounds: int, protocol: str) -> tuple[Path, Path, list[str]]:
    """A plaintext loopback deployment training breast_cancer in batches of 64: (its file,
    the model owner's output folder, every player's name)."""
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64'
    config = write_config(tmp_path, owners=owners, training=training, protocol=protocol)
    names = ["server-0", "server-1", "server-2", "model-owner", *(f"data-owner-{i}" for i in range(owners))]
    return config, tmp_path / "out", names


def test_three_of_four_owners_crashing_never_opens_the_last_ones_gradient(tmp_path: Path, procs: Players) -> None:
    """Attack 3, with no attacker: four data owners, ``min_owners = 3``, three killed with
    SIGKILL mid-training. Rounds used to go on over the one left, opening its gradient to the
    model owner every round. Now no sum over fewer than three owners is accepted (every
    server refuses it), rounds pause, and the model owner stops with one line, exit 2."""
    protocol = "min_owners = 3\nidle_timeout = 6.0\nserver_timeout = 1.5"
    config, out, names = deployment(tmp_path, 4, 100000, protocol)
    for name in names:
        procs.start_role(config, name, "--out", str(out))
    wait_until(lambda: len(read_rounds(out)) >= 5, 120, "five rounds")
    for i in (1, 2, 3):
        procs.kill(f"data-owner-{i}", signal.SIGKILL)
    assert procs.wait("model-owner", 120) == 2
    log = procs.log("model-owner")
    # (data-owner-0 may have given up on the paused model owner by then: 0 or 1 of 4)
    assert re.search(r"fewer than min_owners = 3 data owners connected for 6s \([01] of 4\)$", log.splitlines()[-1])
    rows = read_rounds(out)
    summed = [r for r in rows if r.get("skipped") is None]
    assert len(summed) >= 5 and all(len(r["contributors"]) >= 3 for r in summed), "no sum over fewer than three"
    assert len(rows) - len(summed) <= 2, "at most the rounds in flight when the owners died yielded nothing"


def run_attack(procs: Players, attacker: str, attack: list[str], rounds: int = 20) -> tuple[list[dict], str]:  # type: ignore[type-arg]
    """Train breast_cancer with ``attacker`` started as the attacker ``attack`` says; every honest player must
    finish cleanly. Returns (the statistics round and every training round, the model owner's log)."""
    protocol = "server_timeout = 1.0\nidle_timeout = 120.0\nmac_window = 2"
    config, out, names = deployment(procs.log_dir, 3, rounds, protocol)
    for name in names:
        procs.start_role(config, name, "--out", str(out), attack=attack if name == attacker else None)
    for name in names:
        if name != attacker:
            assert procs.wait(name, 240) == 0, f"{name} failed:\n{procs.log(name)}"
    mo_log = procs.log("model-owner")
    metrics = json.loads((out / "metrics.json").read_text())
    log = [metrics["statistics_round"], *metrics["rounds"]]
    assert len(metrics["rounds"]) == rounds and all(r.get("skipped") is None for r in log), "every round has a sum"
    assert not metrics["excluded_servers"], "no honest server excluded"
    assert all(r["cross_checked"] or r.get("mac") for r in log), "no sum accepted unchecked"
    contributors = [r["contributors"] for r in metrics["rounds"]]
    theta = ReferenceTrainer(load_config(config)).run(contributors, metrics["statistics_contributors"]).theta
    with np.load(out / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)  # every accepted sum was honest
    return log, mo_log


def test_an_owner_withholding_its_share_from_one_server_forces_no_unchecked_round(procs: Players) -> None:
    """Attack 7: data-owner-0 never sends server-2 its share. server-2 waits for it, so it
    used to look silent: it was dropped and every round ran on two servers, unchecked. Now it
    is told to close its inputs, reports what it holds, and the round is disputed and
    completed, checked by the MAC, on the two servers that hold every share; no server is
    dropped and the withholding owner costs only time."""
    log, mo_log = run_attack(procs, "data-owner-0", ["--withhold", "server-2"])
    assert "silent" not in mo_log and "closing connection to server-2" not in mo_log
    assert any(r.get("disputed") == ["server-2"] for r in log)


def test_a_server_reporting_that_it_holds_no_one_is_outvoted(procs: Players) -> None:
    """Attack 6: server-1 answers every round with an empty ``Holding``. Every round used to
    fail with "0 contributor(s)", naming no one. Now its report is the odd one out: the round
    is disputed and completed, checked by the MAC, on the other two; training goes on over
    every owner."""
    log, _ = run_attack(procs, "server-1", ["--lie", "nothing:every"])
    assert all(len(r["contributors"]) == 3 for r in log), "no owner paid for the lie"
    assert any(r.get("disputed") == ["server-1"] for r in log)
