"""Differential privacy inside the secure sum, whole deployments in process (the resumed run,
which needs a killed model owner, is tests/integration/test_privacy.py's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import Config, load_config
from asyncmpc.errors import DisputeError
from asyncmpc.learning.privacy.plan import plan_for
from asyncmpc.wire import messages as m
from tests.attackers import Liar
from tests.helpers import hosts_toml, write_config
from tests.inprocess.deploy import MO, run_deployment


def private_config(tmp_path: Path, privacy: str, training: str = "", protocol: str = "") -> Config:
    text = hosts_toml(3, protocol=protocol, training='dataset = "breast_cancer"\n' + training)
    return load_config(write_config(tmp_path, text + "\n[privacy]\n" + privacy))


def test_a_private_run_logs_the_proven_epsilon_and_stops_at_its_budget(tmp_path: Path) -> None:
    z, q, stop = 1.5, 0.2, 8
    set_noise = f"noise_multiplier = {z}\nsampling_rate = {q}"
    accountant = plan_for(private_config(tmp_path, set_noise, "rounds = 30"), 31).accountant()
    budget = (accountant.epsilon(stop) + accountant.epsilon(stop + 1)) / 2
    config = private_config(tmp_path, f"{set_noise}\nepsilon = {budget}", "rounds = 30")
    outcome = run_deployment(config, tmp_path / "out")
    metrics = outcome.metrics
    rows = metrics["rounds"]
    assert outcome.errors == {} and len(rows) == stop, metrics.get("stopped")
    assert f"one more round would spend more than epsilon {budget:g}" in metrics["stopped"]
    for t, row in enumerate(rows, start=1):  # the ledger's epsilon is the proven one, round by round
        assert row["epsilon"] == pytest.approx(accountant.epsilon(t), rel=1e-12)
        assert row["loss"] is not None and row["cross_checked"]
    assert metrics["privacy"]["releases"] == stop and metrics["privacy"]["epsilon"] <= budget
    assert json.loads((tmp_path / "out" / "privacy.json").read_text()) == {"releases": stop}
    assert "statistics_round" not in metrics  # the scaling comes from the model owner's test set


def test_with_a_server_down_the_two_left_deal_the_noise_and_training_goes_on(tmp_path: Path) -> None:
    config = private_config(
        tmp_path, "epsilon = 8.0\nsampling_rate = 0.3", "rounds = 25\nlearning_rate = 0.1", "server_timeout = 2.0"
    )
    outcome = run_deployment(config, tmp_path / "out", absent=("server-1",))  # server-1 never comes
    rows = outcome.metrics["rounds"]
    assert outcome.errors == {}
    assert len(rows) == 25 and all(r["servers"] == ["server-0", "server-2"] for r in rows)
    assert outcome.metrics["privacy"]["epsilon"] <= 8.0
    assert outcome.metrics["final_test_accuracy"] > 0.85


def test_a_lying_server_under_privacy_stops_training_naming_the_suspects(tmp_path: Path) -> None:
    """No MAC round may open the noise-free sum, so a failed cross-check ends training with an
    error that says why and names the suspects."""
    config = private_config(tmp_path, "noise_multiplier = 2.0", "rounds = 20", "idle_timeout = 30.0")
    cheat = Liar("vector", "once")

    def lie(sender: str, to: str, msg: m.Message) -> m.Message:
        return cheat.alter(msg) if sender == "server-1" and to == MO else msg

    with pytest.raises(DisputeError, match=r"under \[privacy\] a MAC round cannot find the liar.*server-1"):
        run_deployment(config, tmp_path / "out", tamper=lie)
    assert json.loads((tmp_path / "out" / "privacy.json").read_text())["releases"] >= 1


def test_owner_level_privacy_trains_end_to_end_with_each_owner_clipped_whole(tmp_path: Path) -> None:
    z, rounds = 1.0, 10
    config = private_config(tmp_path, f'unit = "owner"\nnoise_multiplier = {z}\nclip = 1.0', f"rounds = {rounds}")
    metrics = run_deployment(config, tmp_path / "out").metrics
    assert metrics["privacy"]["unit"] == "owner" and metrics["privacy"]["sampling_rate"] == 1.0
    assert len(metrics["rounds"]) == rounds and "stopped" not in metrics
    accountant = plan_for(config, 31).accountant()  # every owner every round: no amplification by sampling
    assert accountant.sampling_rate == 1.0
    for t, row in enumerate(metrics["rounds"], start=1):
        assert row["epsilon"] == pytest.approx(accountant.epsilon(t), rel=1e-12) and len(row["contributors"]) == 3
    with np.load(tmp_path / "out" / "model.npz") as f:
        assert np.all(np.isfinite(f["weights"]))
