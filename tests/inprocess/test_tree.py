"""DP-FTRL (``[privacy] mechanism = "tree"``), whole deployments in process."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from asyncmpc.config import load_config
from asyncmpc.wire import messages as m
from tests.helpers import hosts_toml, write_config
from tests.inprocess.deploy import run_deployment


def tree_config(tmp_path: Path, privacy: str, rounds: int = 20):  # type: ignore[no-untyped-def]
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\noptimizer = "sgd"\nlearning_rate = 0.5'
    protocol = "round_timeout = 4.0\nserver_timeout = 0.5"
    text = hosts_toml(3, training=training, protocol=protocol) + '\n[privacy]\nmechanism = "tree"\n' + privacy
    return load_config(write_config(tmp_path, text))


def test_a_tree_run_trains_every_owner_every_round_within_its_epsilon(tmp_path: Path) -> None:
    config = tree_config(tmp_path, "epoch_steps = 5\nepsilon = 8.0")
    outcome = run_deployment(config, tmp_path / "out")
    metrics = outcome.metrics
    assert outcome.errors == {}
    rows = metrics["rounds"]
    assert len(rows) == 20 and all(len(r["contributors"]) == 3 for r in rows), rows[:3]
    assert metrics["privacy"]["epsilon"] <= 8.0
    assert metrics["final_test_accuracy"] > 0.85


class Seen:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, m.Message]] = []

    def __call__(self, sender: str, to: str, msg: m.Message) -> m.Message:
        self.sent.append((sender, to, msg))
        return msg


def test_a_model_owner_repeating_a_position_gets_one_release_of_it(tmp_path: Path) -> None:
    """Every round is opened at position 0: each server deals position 0 once and refuses it
    after; every owner answers leaf 0 of tree 0 once. Position 0's noise is never released
    over two different inputs."""
    config = tree_config(tmp_path, "epoch_steps = 5\nnoise_multiplier = 2.0", rounds=6)
    seen = Seen()

    def repeat(sender: str, to: str, msg: m.Message) -> m.Message | None:
        if isinstance(msg, m.OpenRound):
            msg = dataclasses.replace(msg, position=0)
        if isinstance(msg, m.ModelUpdate):
            msg = dataclasses.replace(msg, step=0)
        return seen(sender, to, msg)

    outcome = run_deployment(config, tmp_path / "out", tamper=repeat)
    per_server = Counter(sender for sender, _, msg in seen.sent if isinstance(msg, m.ResultShare))
    assert max(per_server.values(), default=0) <= 1 and len(outcome.metrics["rounds"]) == 6
    answers = Counter(sender for sender, to, msg in seen.sent if isinstance(msg, m.InputShare) and to == "server-0")
    assert max(answers.values()) == 1  # each owner answered leaf 0 once


def test_an_owner_told_another_position_than_the_servers_is_not_summed(tmp_path: Path) -> None:
    """The model owner tells data-owner-0 step p + 1 while the servers open position p: that
    owner's shares (naming p + 1) are not taken, so its batch is never noised as another leaf."""
    config = tree_config(tmp_path, "epoch_steps = 5\nnoise_multiplier = 2.0", rounds=4)

    def shift(sender: str, to: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ModelUpdate) and to == "data-owner-0":
            return dataclasses.replace(msg, step=msg.step + 1)
        return msg

    outcome = run_deployment(config, tmp_path / "out", tamper=shift)
    assert all("data-owner-0" not in r["contributors"] for r in outcome.metrics["rounds"])


def test_the_reference_trainer_runs_a_tree_too() -> None:
    from asyncmpc.config import parse_config
    from asyncmpc.learning.training import ReferenceTrainer

    text = hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"\nrounds = 10')
    cfg = parse_config(text + '\n[privacy]\nmechanism = "tree"\nepoch_steps = 5\nnoise_multiplier = 1.0\n')
    trainer = ReferenceTrainer(cfg, quantize=False)
    trainer.run()
    assert len(trainer.history) == 10
