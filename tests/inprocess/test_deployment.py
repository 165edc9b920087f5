"""Whole deployments in one process over the in-process transport: the real roles, messages
through the codec, no sockets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from asyncmpc.config import load_config
from asyncmpc.learning.training import ReferenceTrainer
from asyncmpc.wire import messages as m
from tests.helpers import write_config
from tests.inprocess.deploy import MO, run_deployment


def test_secure_training_in_process_matches_the_reference(tmp_path: Path) -> None:
    path = write_config(tmp_path, owners=3, training='dataset = "breast_cancer"\nrounds = 20')
    config = load_config(path)
    outcome = run_deployment(config, tmp_path / "out")
    assert outcome.errors == {}
    rounds = outcome.metrics["rounds"]
    assert len(rounds) == 20 and all(len(r["contributors"]) == 3 for r in rounds)
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], ReferenceTrainer(config).run().theta, atol=1e-9, rtol=0)


def test_a_result_share_changed_in_flight_gets_its_server_excluded_and_training_stays_exact(tmp_path: Path) -> None:
    path = write_config(tmp_path, owners=3, training="rounds = 3")
    config = load_config(path)
    tampered = []

    def liar(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == "server-2" and to == MO and isinstance(msg, m.ResultShare) and msg.round_no >= 2:
            tampered.append(msg.round_no)
            return dataclasses.replace(msg, a=msg.a + 1, b_tag=bytes(16))
        return msg

    outcome = run_deployment(config, tmp_path / "out", tamper=liar)
    assert tampered, "the liar had a chance"
    assert list(outcome.metrics["excluded_servers"]) == ["server-2"]
    assert set(outcome.errors) == {"server-2"} and "excluded this server" in str(outcome.errors["server-2"])
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        np.testing.assert_allclose(f["theta"], ReferenceTrainer(config).run().theta, atol=1e-9, rtol=0)
