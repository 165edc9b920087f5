"""Training on MNIST read from its files (small ones made by the test), every player in one
process over the in-process transport."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asyncmpc.config import load_config
from asyncmpc.learning.training import ReferenceTrainer, load_model, load_sklearn
from tests.helpers import write_config
from tests.inprocess.deploy import run_deployment
from tests.mnist_files import digits, write_idx


def test_a_small_mnist_from_gzipped_idx_files_trains_securely_and_exports_its_digits(tmp_path: Path) -> None:
    train, test = digits(150, seed=3), digits(50, seed=4)
    write_idx(tmp_path / "mnist", train, test, gz=True)
    training = 'dataset = "mnist"\ndataset_path = "mnist"\nrounds = 8\nlearning_rate = 0.01'
    config = load_config(write_config(tmp_path, owners=3, training=training))
    outcome = run_deployment(config, tmp_path / "out")
    assert outcome.errors == {}
    metrics = outcome.metrics
    assert metrics["classes"] == [str(d) for d in range(10)]
    assert len(metrics["rounds"]) == 8 and all(len(r["contributors"]) == 3 for r in metrics["rounds"])
    losses = [r["loss"] for r in metrics["rounds"]]
    assert losses[0] > 2.0 and losses[-1] < 0.01 and losses == sorted(losses, reverse=True)
    assert metrics["final_test_accuracy"] >= 0.9 and metrics["sklearn_pooled_accuracy"] >= 0.9
    # the same rounds in one process, with the same fixed-point sums: the same parameters
    saved = load_model(tmp_path / "out" / "model.npz")
    np.testing.assert_allclose(saved.theta, ReferenceTrainer(config).run().theta, atol=1e-9, rtol=0)
    # the model takes raw pixels scaled as training scaled them, and answers digits 0..9
    x = test[0].reshape(50, 784) / 255.0
    assert saved.classes.tolist() == list(range(10))
    predicted = saved.predict(x)
    assert predicted.dtype.kind == "i" and np.mean(predicted == test[1]) == metrics["final_test_accuracy"]
    estimator = load_sklearn(tmp_path / "out" / "model.npz")
    assert estimator.classes_.tolist() == list(range(10))
    assert estimator.score(x, test[1]) == metrics["final_test_accuracy"]
