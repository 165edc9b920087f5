"""Any model through the secure path, every player a process: the MLP on digits, FedAvg with
local steps, the example plug-ins, and plug-ins that break on one data owner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.training import ReferenceTrainer, load_model
from tests.helpers import ALL, ROOT, Players, run_deployment, write_config

pytestmark = [pytest.mark.integration, pytest.mark.process]

MLP = '\nmodel = "mlp"\nlearning_rate = 0.01\n[training.model_options]\nhidden_layers = [32]'


@pytest.mark.parametrize("local_steps", [1, 3])
def test_an_mlp_trained_securely_on_digits_equals_the_reference_and_nears_scikit_learns(
    tmp_path: Path, procs: Players, local_steps: int
) -> None:
    training = f'dataset = "digits"\nrounds = 60\nlocal_steps = {local_steps}' + MLP
    config = write_config(tmp_path, owners=3, training=training)
    metrics = run_deployment(procs, config)
    assert len(metrics["rounds"]) == 60 and all(len(r["contributors"]) == 3 for r in metrics["rounds"])
    # the same rounds in one process, with the same fixed-point sums: the same parameters
    reference = ReferenceTrainer(load_config(config)).run()
    saved = load_model(tmp_path / "out" / "model.npz")
    np.testing.assert_allclose(saved.theta, reference.theta, atol=1e-9, rtol=0)
    # and within 2 points of scikit-learn's MLPClassifier of the same architecture, pooled data
    assert metrics["sklearn_pooled_accuracy"] > 0.9
    assert metrics["final_test_accuracy"] >= metrics["sklearn_pooled_accuracy"] - 0.02


def test_the_example_plug_ins_train_end_to_end_as_separate_processes(tmp_path: Path, procs: Players) -> None:
    example = (ROOT / "examples" / "hosts.toml").read_text()
    text = example.split("[players.model-owner]")[0].replace("rounds = 60", "rounds = 40")
    config = write_config(tmp_path, owners=3, training="")  # for the player tables and free ports
    players_part = "[players.model-owner]" + config.read_text().split("[players.model-owner]", 1)[1]
    config.write_text(text + players_part)
    metrics = run_deployment(procs, config)
    assert len(metrics["rounds"]) == 40
    saved = load_model(tmp_path / "out" / "model.npz")
    assert type(saved.model.impl).__name__ == "PolySoftmax" and saved.model.size == (13 * 2 + 1) * 3
    # the model owner has no pooled data with a data plug-in: pool it here, as the baseline would
    from examples.wine_owners import load

    parts = [load(f"data-owner-{i}", i) for i in range(3)]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    x_test, y_test = load("model-owner", None)
    baseline = saved.model.baseline().fit((x - saved.mean) / saved.scale, y)
    pooled = baseline.score((x_test - saved.mean) / saved.scale, y_test)
    assert metrics["sklearn_pooled_accuracy"] is None
    assert metrics["final_test_accuracy"] > 0.9 and metrics["final_test_accuracy"] >= pooled - 0.05
    assert np.mean(saved.predict(x_test) == y_test.astype(int)) == metrics["final_test_accuracy"]  # labels as integers


FAULTY = 'dataset = "tests.plugins.faulty:data"\nclasses = ["malignant", "benign"]\nrounds = 4\n'


@pytest.mark.parametrize(
    ("fault", "model", "line"),
    [
        (
            "import",
            "tests.plugins.missing:build",
            "asyncmpc: data-owner-2: model plug-in 'tests.plugins.missing:build': cannot import "
            "tests.plugins.missing: ModuleNotFoundError: No module named 'tests.plugins.missing'",
        ),
        (
            "raises",
            "tests.plugins.faulty:raises",
            "cannot contribute: model plug-in 'tests.plugins.faulty:raises': loss_and_gradient raised "
            "RuntimeError: this owner's gradient is broken",
        ),
        (
            "shape",
            "tests.plugins.faulty:wrong_shape",
            "cannot contribute: model plug-in 'tests.plugins.faulty:wrong_shape': loss_and_gradient returned "
            "shape (30,), expected (31,)",
        ),
    ],
)
def test_a_broken_plug_in_is_one_line_on_its_player_and_the_others_train_on(
    tmp_path: Path, procs: Players, fault: str, model: str, line: str
) -> None:
    good = f'{FAULTY}model = "{"logreg" if fault == "import" else model}"'
    config = write_config(tmp_path, owners=3, training=good, protocol="connect_timeout = 5.0")
    own = tmp_path / "own"
    own.mkdir()
    owner_config = own / "hosts.toml"  # data-owner-2's copy names the plug-in that breaks
    owner_config.write_text(config.read_text().replace(good, f'{FAULTY}model = "{model}"'))
    out = tmp_path / "out"
    for name in ALL:
        procs.start_role(owner_config if name == "data-owner-2" else config, name, "--out", str(out))
    for name in ALL:
        expected = 2 if (name == "data-owner-2" and fault == "import") else 0
        assert procs.wait(name, 120) == expected, f"{name}:\n{procs.log(name)}"
    owner_log, mo_log = procs.log("data-owner-2"), procs.log("model-owner")
    assert "Traceback" not in owner_log
    assert line in owner_log
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["contributors"] for r in metrics["rounds"]] == [["data-owner-0", "data-owner-1"]] * 4
    if fault == "import":
        assert owner_log.strip().splitlines()[-1] == line
        assert metrics["statistics_contributors"] == ["data-owner-0", "data-owner-1"]
    else:
        assert all(f"data-owner-2 declined round {t}" in mo_log for t in range(2, 6))
