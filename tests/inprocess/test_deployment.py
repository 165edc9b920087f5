"""Whole deployments in one process over the in-process transport: the real roles, messages
through the codec, no sockets."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.report import summary
from asyncmpc.learning.training import ReferenceTrainer, load_model
from asyncmpc.net.memory import Hub
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


def test_a_data_owner_whose_values_never_fit_the_ring_stops_at_start_and_is_counted_as_contributing_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    header = "a,b,label"
    rows = {0: ["1.0,2.0,x", "2.0,1.0,y", "1.5,1.0,x"], 1: ["0.5,2.0,y", "3.0,1.0,x", "1.0,0.0,y"]}
    rows[2] = ["2.0,1e300,x", "", "1.0,-2e300,y"]  # squares overflow: its statistics cannot be encoded
    extra = {}
    for i, lines in rows.items():
        (tmp_path / f"owner{i}.csv").write_text("\n".join([header, *lines]) + "\n")
        extra[f"data-owner-{i}"] = f'csv = "owner{i}.csv"'
    (tmp_path / "test.csv").write_text("\n".join([header, "1.0,2.0,x", "2.0,0.5,y"]) + "\n")
    extra["model-owner"] = 'csv = "test.csv"'
    training = 'dataset = "csv"\nclasses = ["x", "y"]\nrounds = 3'
    path = write_config(tmp_path, owners=3, training=training, extra=extra, protocol="connect_timeout = 1.0")
    config = load_config(path)
    with caplog.at_level(logging.WARNING):
        outcome = run_deployment(config, tmp_path / "out")
    # column a is in range; b's largest value is on line 4 (line 3 is empty), and the line says no value
    error = str(outcome.errors.pop("data-owner-2"))
    where = f"{config.player('data-owner-2').csv}: line 4, column 'b'"
    assert error.startswith(f"{where}: too large for the fixed-point ring: the statistics round sums the squares")
    assert "[protocol] frac_bits = 16 and max_owners = 1000" in error and "e+300" not in error
    assert outcome.errors == {}
    assert [r["contributors"] for r in outcome.metrics["rounds"]] == [["data-owner-0", "data-owner-1"]] * 3
    assert outcome.metrics["contributed_rounds"] == {"data-owner-0": 3, "data-owner-1": 3, "data-owner-2": 0}
    assert "data-owner-2 contributed to no round" in caplog.text
    assert "cannot encode" not in caplog.text  # no owner declined a round


def test_metrics_count_each_owners_contributed_rounds_and_the_summary_names_who_gave_fewer(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, owners=3, training="rounds = 5"))

    def short_model(sender: str, to: str, msg: m.Message) -> m.Message:
        # data-owner-1 is sent a model of the wrong size at steps 2 and 3: it declines those rounds
        if to == "data-owner-1" and isinstance(msg, m.ModelUpdate) and msg.step in (2, 3):
            return dataclasses.replace(msg, theta=msg.theta[:-1])
        return msg

    metrics = run_deployment(config, tmp_path / "out", tamper=short_model).metrics
    assert [len(r["contributors"]) for r in metrics["rounds"]] == [3, 2, 2, 3, 3]
    assert metrics["contributed_rounds"] == {"data-owner-0": 5, "data-owner-1": 3, "data-owner-2": 5}
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert written["contributed_rounds"] == metrics["contributed_rounds"]
    assert "contributed rounds of the 5 that released a sum: data-owner-1 3; the other 2 all 5" in summary(written)


def test_an_owner_sent_a_model_for_another_number_of_features_declines_with_code_data_and_stops(
    tmp_path: Path,
) -> None:
    config = load_config(write_config(tmp_path, owners=3, training="rounds = 4"))
    declines: list[m.Decline] = []

    def narrow(sender: str, to: str, msg: m.Message) -> m.Message:
        if to == "data-owner-2" and isinstance(msg, m.ModelUpdate) and msg.step == 3:
            return dataclasses.replace(msg, mean=msg.mean[:-1], scale=msg.scale[:-1])
        if isinstance(msg, m.Decline):
            declines.append(msg)
        return msg

    outcome = run_deployment(config, tmp_path / "out", tamper=narrow)
    assert str(outcome.errors.pop("data-owner-2")) == (
        "[training] dataset 'breast_cancer' has 30 features here, but the model owner's model takes 29"
    )
    assert outcome.errors == {}
    assert [(d.code, d.reason) for d in declines] == [
        (m.Refusal.DATA, "its data has 30 features, the model takes 29: it stops")
    ]
    assert outcome.metrics["contributed_rounds"] == {"data-owner-0": 4, "data-owner-1": 4, "data-owner-2": 2}


MLP = '\nmodel = "mlp"\nlearning_rate = 0.01\n[training.model_options]\nhidden_layers = [32]'


@pytest.mark.parametrize("local_steps", [1, 3])
def test_an_mlp_trained_securely_on_digits_equals_the_reference_and_nears_scikit_learns(
    tmp_path: Path, local_steps: int
) -> None:
    training = f'dataset = "digits"\nrounds = 60\nlocal_steps = {local_steps}' + MLP
    config = load_config(write_config(tmp_path, owners=3, training=training))
    metrics = run_deployment(config, tmp_path / "out").metrics
    assert len(metrics["rounds"]) == 60 and all(len(r["contributors"]) == 3 for r in metrics["rounds"])
    # the same rounds in one process, with the same fixed-point sums: the same parameters
    reference = ReferenceTrainer(config).run()
    saved = load_model(tmp_path / "out" / "model.npz")
    np.testing.assert_allclose(saved.theta, reference.theta, atol=1e-9, rtol=0)
    # and within 2 points of scikit-learn's MLPClassifier of the same architecture, pooled data
    assert metrics["sklearn_pooled_accuracy"] > 0.9
    assert metrics["final_test_accuracy"] >= metrics["sklearn_pooled_accuracy"] - 0.02


def test_an_owner_that_reconnected_between_rounds_is_not_withdrawn_from_the_next(tmp_path: Path) -> None:
    """data-owner-0's connection to the model owner closes after round 4 and is made again
    before round 5 starts: the model owner reads that it closed only during round 5, whose
    request went over the new connection. That stale notice must not withdraw the owner
    (over TCP its shares may reach the servers after the ``Withdraw``: it is left out)."""
    config = load_config(write_config(tmp_path, owners=3, training='dataset = "breast_cancer"\nrounds = 8'))
    withdrawn: list[tuple[int, tuple[str, ...]]] = []

    def reconnect(hub: Hub, row: dict[str, object]) -> None:
        if row["round"] == 4:
            hub.cut("data-owner-0", MO)
            hub.link()

    def watch(sender: str, to: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.Withdraw):
            withdrawn.append((msg.round_no, msg.owners))
        return msg

    outcome = run_deployment(config, tmp_path / "out", tamper=watch, after_round=reconnect)
    assert outcome.errors == {}
    assert [len(r["contributors"]) for r in outcome.metrics["rounds"]] == [3] * 8
    assert withdrawn == []


def _csv_deployment(
    folder: Path, owner_2_header: str, owner_2_rows: list[str], protocol: str = "connect_timeout = 1.0"
) -> tuple[Path, list[str]]:
    """Three CSV owners and the model owner's test file with columns a, b; data-owner-2's file
    as given."""
    folder.mkdir()
    header = "a,b,label"
    rows = {0: ["1.0,2.0,x", "2.0,1.0,y", "1.5,1.0,x"], 1: ["0.5,2.0,y", "3.0,1.0,x", "1.0,0.0,y"]}
    extra = {}
    for i, lines in [*rows.items(), (2, owner_2_rows)]:
        text = "\n".join([owner_2_header if i == 2 else header, *lines]) + "\n"
        (folder / f"owner{i}.csv").write_text(text)
        extra[f"data-owner-{i}"] = f'csv = "owner{i}.csv"'
    (folder / "test.csv").write_text("\n".join([header, "1.0,2.0,x", "2.0,0.5,y"]) + "\n")
    extra["model-owner"] = 'csv = "test.csv"'
    training = 'dataset = "csv"\nclasses = ["x", "y"]\nrounds = 4'
    return write_config(folder, owners=3, training=training, extra=extra, protocol=protocol), rows[0]


def test_a_data_owner_takes_its_csv_columns_by_the_model_owners_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ordered, _ = _csv_deployment(tmp_path / "ordered", "a,b,label", ["2.0,4.0,y", "0.5,1.5,x"])
    swapped, _ = _csv_deployment(tmp_path / "swapped", "label,b,a", ["y,4.0,2.0", "x,1.5,0.5"])
    thetas = []
    for path in (ordered, swapped):
        with caplog.at_level(logging.INFO):
            outcome = run_deployment(load_config(path), path.parent / "out")
        assert outcome.errors == {}
        with np.load(path.parent / "out" / "checkpoint.npz") as f:
            thetas.append(f["theta"])
    np.testing.assert_array_equal(thetas[0], thetas[1])  # the same data, whatever its columns' order
    assert "owner2.csv: columns taken in the model owner's order ('a', 'b')" in caplog.text


def test_a_data_owner_whose_csv_lacks_a_column_of_the_model_stops_naming_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _csv_deployment(tmp_path / "d", "a,c,label", ["2.0,4.0,y", "0.5,1.5,x"])
    config = load_config(path)
    with caplog.at_level(logging.WARNING):
        outcome = run_deployment(config, tmp_path / "out")
    # the model owner hears that the columns differ, not which (it could probe an owner's names)
    told = [r.getMessage() for r in caplog.records if "data-owner-2 refused" in r.getMessage()]
    assert told == ["data-owner-2 refused: its columns are not the model owner's"]
    error = str(outcome.errors.pop("data-owner-2"))
    assert error == (
        f"{config.player('data-owner-2').csv}: its columns are not the model owner's (no column 'b'; "
        "columns 'c' besides): the model takes 'a', 'b'"
    )
    assert outcome.errors == {}
    assert outcome.metrics["contributed_rounds"] == {"data-owner-0": 4, "data-owner-1": 4, "data-owner-2": 0}


def test_a_schema_that_repeats_a_name_is_refused_and_a_second_schema_does_not_move_the_columns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = _csv_deployment(
        tmp_path / "d", "a,b,label", ["2.0,4.0,y", "0.5,1.5,x"], "connect_timeout = 1.0\nround_timeout = 2.0"
    )
    config = load_config(path)
    rejects: list[tuple[str, str]] = []

    def deviate(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and to == "data-owner-2" and isinstance(msg, m.Schema):
            return dataclasses.replace(msg, features=("a", "b", "a"))  # 3 columns for a model of 2
        if sender == MO and to == "data-owner-1" and isinstance(msg, m.ModelUpdate) and msg.round_no == 2:
            return m.Schema(session=msg.session, features=("b", "a"))  # another order mid-training
        if isinstance(msg, m.Reject) and to == MO:
            rejects.append((sender, msg.reason))
        return msg

    with caplog.at_level(logging.INFO):
        outcome = run_deployment(config, tmp_path / "out", tamper=deviate)
    error = str(outcome.errors.pop("data-owner-2"))
    assert "its columns are not the model owner's (a name twice)" in error
    assert outcome.errors == {}  # data-owner-1 kept serving, in its first order
    assert ("data-owner-1", "a schema other than the first this owner took: it keeps the first") in rejects
    assert ("data-owner-2", "its columns are not the model owner's") in rejects
    assert outcome.metrics["contributed_rounds"]["data-owner-1"] == 3  # all but the round it was not asked


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_columns_name(tmp_path: Path) -> None:
    from asyncmpc.learning.data import load_csv

    (tmp_path / "t.csv").write_bytes("\ufeffa,b,label\n1.0,2.0,x\n".encode())
    assert load_csv(str(tmp_path / "t.csv"), "label", ("x", "y")).features == ("a", "b")
