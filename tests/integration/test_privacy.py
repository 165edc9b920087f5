"""Differential privacy inside the secure sum, every player a process over real TCP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from asyncmpc.config import load_config
from asyncmpc.learning.privacy.accountant import Accountant
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


def test_a_private_run_logs_dp_accountings_epsilon_and_stops_at_its_budget(tmp_path: Path, procs: Players) -> None:
    z, q, stop = 1.5, 0.2, 8
    budget = (Accountant(z, q, 1e-5).epsilon(stop) + Accountant(z, q, 1e-5).epsilon(stop + 1)) / 2
    config = private_config(tmp_path, f"noise_multiplier = {z}\nsampling_rate = {q}\nepsilon = {budget}", "rounds = 30")
    metrics = run_training(procs, config)

    rows = metrics["rounds"]
    assert len(rows) == stop, metrics.get("stopped")
    assert f"one more round would spend more than epsilon {budget:g}" in metrics["stopped"]
    for t, row in enumerate(rows, start=1):  # the ledger's epsilon is dp-accounting's, round by round
        assert row["epsilon"] == pytest.approx(Accountant(z, q, 1e-5).epsilon(t), rel=1e-12)
        assert row["loss"] is not None and row["cross_checked"]
    assert metrics["privacy"]["releases"] == stop and metrics["privacy"]["epsilon"] <= budget
    assert json.loads((tmp_path / "out" / "privacy.json").read_text()) == {"releases": stop}
    assert "statistics_round" not in metrics  # the scaling comes from the model owner's test set


def test_with_a_server_down_the_two_left_deal_the_noise_and_training_goes_on(tmp_path: Path, procs: Players) -> None:
    config = private_config(
        tmp_path,
        "epsilon = 8.0\nsampling_rate = 0.3",
        "rounds = 25\nlearning_rate = 0.1",
        protocol="server_timeout = 2.0",
    )
    metrics = run_training(procs, config, servers=(0, 2))  # server-1 never comes

    rows = metrics["rounds"]
    assert len(rows) == 25 and all(r["servers"] == ["server-0", "server-2"] for r in rows)
    assert metrics["privacy"]["epsilon"] <= 8.0
    assert metrics["final_test_accuracy"] > 0.85
    logs = (tmp_path / "server-0.log").read_text()
    assert "noise multiplier" in logs


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
    accountant = Accountant(z, q, 1e-5)
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


def test_owner_level_privacy_trains_end_to_end_with_each_owner_clipped_whole(tmp_path: Path, procs: Players) -> None:
    z, rounds = 1.0, 10
    config = private_config(tmp_path, f'unit = "owner"\nnoise_multiplier = {z}\nclip = 1.0', f"rounds = {rounds}")
    metrics = run_training(procs, config)
    assert metrics["privacy"]["unit"] == "owner" and metrics["privacy"]["sampling_rate"] == 1.0
    assert len(metrics["rounds"]) == rounds and "stopped" not in metrics
    accountant = Accountant(z, 1.0, 1e-5)  # every owner every round: no amplification by sampling
    for t, row in enumerate(metrics["rounds"], start=1):
        assert row["epsilon"] == pytest.approx(accountant.epsilon(t), rel=1e-12) and len(row["contributors"]) == 3
    assert (tmp_path / "out" / "model.npz").exists()
