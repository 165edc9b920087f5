"""Differential privacy inside the secure sum, every player a process over real TCP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from asyncmpc.config import load_config
from asyncmpc.learning.privacy.plan import plan_for
from tests.helpers import OWNERS, ROOT, Players, hosts_toml, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.process]


def private_config(tmp_path: Path, privacy: str, training: str = "", protocol: str = "") -> Path:
    text = hosts_toml(3, tls=True, protocol=protocol, training='dataset = "breast_cancer"\n' + training)
    return write_config(tmp_path, text + "\n[privacy]\n" + privacy)


def test_opened_sums_of_zero_inputs_carry_the_noise_the_accountant_assumed(tmp_path: Path, procs: Players) -> None:
    """Three server processes deal noise; two owners share zeros for 10 rounds: the opened
    sums are the noise alone, integers of mean 0 and variance 1.5 sigma^2 (each of three
    dealers sigma^2 / 2), normal-looking, and the servers' results still cross-check."""
    config = private_config(tmp_path, "noise_multiplier = 1.0\nclip = 1.0")
    out, length, rounds = tmp_path / "noise.npz", 2000, 10
    client = [sys.executable, str(ROOT / "tests/integration/sum_client.py"), str(config), str(out)]
    for i in range(3):
        procs.start_role(config, f"server-{i}")
    procs.start("client", [*client, str(length), str(rounds), "zeros"])
    assert procs.wait("client", 120) == 0, procs.log("client")
    for i in range(3):
        assert procs.wait(f"server-{i}", 30) == 0, procs.log(f"server-{i}")
    with np.load(out) as data:
        totals, checked = data["totals"].astype(np.float64), bool(data["cross_checked"])
    assert checked and totals.shape == (rounds, length)
    sigma = plan_for(load_config(config), length).sigma
    want = 1.5 * sigma * sigma
    assert abs(totals.mean()) < 5 * np.sqrt(want / totals.size)
    assert abs(totals.var() / want - 1) < 0.05  # 20,000 draws: the standard error is 1%
    assert stats.normaltest(totals.ravel()).pvalue > 1e-4
    assert len({row.tobytes() for row in totals}) == rounds  # fresh noise every round


def run_training(procs: Players, config: Path, servers: tuple[int, ...] = (0, 1, 2)) -> dict:  # type: ignore[type-arg]
    out = procs.log_dir / "out"
    for i in servers:
        procs.start_role(config, f"server-{i}")
    for name in ["model-owner", *OWNERS]:
        procs.start_role(config, name, "--out", str(out))
    for name in ["model-owner", *OWNERS, *(f"server-{i}" for i in servers)]:
        assert procs.wait(name, 180) == 0, f"{name}:\n{procs.log(name)}"
    return json.loads((out / "metrics.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.faults
def test_a_resumed_private_run_counts_every_round_it_may_have_released(tmp_path: Path, procs: Players) -> None:
    """The model owner is killed mid-training and started again: the ledger goes on from
    privacy.json, so the rounds asked again are counted twice, and every row's epsilon is
    dp-accounting's for the releases counted when it ended."""
    import random
    import signal

    from asyncmpc.learning.checkpoint import read_rounds

    z, q, rounds = 2.0, 0.2, 200
    config = private_config(tmp_path, f"noise_multiplier = {z}\nsampling_rate = {q}", f"rounds = {rounds}")
    out = tmp_path / "out"
    for name in ["server-0", "server-1", "server-2", "model-owner", *OWNERS]:
        procs.start_role(config, name, "--out", str(out))
    until = random.Random().randrange(10, 60)
    wait_until(lambda: len(read_rounds(out)) >= until, 120, f"round {until}")
    procs.kill("model-owner", signal.SIGKILL)
    before = json.loads((out / "privacy.json").read_text())["releases"]
    logged = len(read_rounds(out))
    assert before >= logged  # counted before each round opened: the one in flight too
    procs.start_role(config, "model-owner", "--out", str(out))
    for name in ["model-owner", *OWNERS, "server-0", "server-1", "server-2"]:
        assert procs.wait(name, 180) == 0, f"{name}:\n{procs.log(name)}"
    metrics = json.loads((out / "metrics.json").read_text())
    resumed = metrics["resumed_after"][0]
    releases = metrics["privacy"]["releases"]
    assert releases == before + (rounds - resumed) >= rounds  # the redone rounds count again
    assert json.loads((out / "privacy.json").read_text()) == {"releases": releases}
    accountant = plan_for(load_config(config), metrics["parameters"]).accountant()
    assert metrics["privacy"]["epsilon"] == pytest.approx(accountant.epsilon(releases), rel=1e-12)
    after = [r for r in metrics["rounds"] if r["round"] > resumed]
    assert after[0]["epsilon"] == pytest.approx(accountant.epsilon(before + 1), rel=1e-12)


@pytest.mark.faults
def test_a_lying_server_under_privacy_stops_training_in_one_line(tmp_path: Path, procs: Players) -> None:
    """No MAC round may open the noise-free sum, so a failed cross-check ends training, with a
    line that says why and names the suspects, and status 2 (an operational stop, not a bug)."""
    config = private_config(tmp_path, "noise_multiplier = 2.0", "rounds = 20", protocol="idle_timeout = 30.0")
    out = tmp_path / "out"
    procs.start_role(config, "server-1", attack=["--lie", "vector:once"])
    for name in ["server-0", "server-2", "model-owner", *OWNERS]:
        procs.start_role(config, name, "--out", str(out))
    assert procs.wait("model-owner", 120) == 2, procs.log("model-owner")
    log = procs.log("model-owner")
    assert "Traceback" not in log
    assert "under [privacy] a MAC round cannot find the liar" in log and "server-1" in log
    assert json.loads((out / "privacy.json").read_text())["releases"] >= 1
