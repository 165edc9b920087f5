"""Logistic regression, data splits and the reference trainer (no MPC, no I/O)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError
from asyncmpc.learning.data import _bundled, _bundled_by_sklearn, batch_indices, load_csv, partition, stratified_split
from asyncmpc.learning.models.logreg import LogisticRegression
from asyncmpc.learning.optim import clip, make_optimizer
from asyncmpc.learning.training import ModelOwnerState, ReferenceTrainer, load_sklearn, scaling_from_stats
from tests.helpers import hosts_toml

CFG = parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training="rounds = 20"), "t.toml")


def test_clip_bounds_the_norm_and_keeps_short_vectors() -> None:
    g = np.array([3.0, 4.0])
    assert np.linalg.norm(clip(g, 1.0)) == pytest.approx(1.0)
    assert clip(g, 10.0) is g


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizers_descend_a_quadratic(name: str) -> None:
    opt = make_optimizer(name, LogisticRegression(2, 2).penalised(), 0.1, 0.0, 0.9)
    theta = np.array([3.0, -2.0, 1.0])
    for _ in range(300):
        theta = opt.step(theta, theta)  # gradient of |theta|^2 / 2
    assert np.linalg.norm(theta) < 0.1


@given(st.integers(2, 20), st.sampled_from(["iid", "dirichlet"]), st.integers(0, 1000))
def test_partition_deals_every_example_once(owners: int, split: str, seed: int) -> None:
    y = np.repeat(np.arange(3), 40)
    t = dataclasses.replace(CFG.training, split=split, seed=seed)
    parts = partition(y, owners, t)
    assert len(parts) == owners and all(len(p) > 0 for p in parts)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))


@given(
    st.lists(st.integers(0, 4), min_size=2, max_size=300),
    st.floats(0.01, 0.99),
    st.integers(0, 2**32 - 1),
)
def test_the_stratified_split_deals_every_example_once_in_the_classes_proportions(
    labels: list[int], fraction: float, seed: int
) -> None:
    y = np.array(labels, dtype=np.int64)
    train, test = stratified_split(y, fraction, seed)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(y)))
    assert len(test) == int(np.ceil(fraction * len(y)))
    for c in np.unique(y):  # each class's share of the test part is its share, rounded
        assert abs(np.sum(y[test] == c) - np.sum(y == c) * len(test) / len(y)) < 1
    again = stratified_split(y, fraction, seed)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], test)


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "wine", "iris"])
def test_bundled_data_read_from_the_files_equals_scikit_learns_loaders(name: str) -> None:
    x, y, classes = _bundled(name)
    sx, sy, sclasses = _bundled_by_sklearn(name)
    assert np.array_equal(x, sx) and np.array_equal(y, sy) and classes == sclasses


def test_dirichlet_split_skews_labels() -> None:
    y = np.repeat(np.arange(2), 500)
    t = dataclasses.replace(CFG.training, split="dirichlet", dirichlet_alpha=0.1)
    shares = [np.mean(y[p]) for p in partition(y, 5, t)]
    assert max(shares) - min(shares) > 0.5


def test_batches_are_reproducible_and_full_batch_is_none() -> None:
    a = batch_indices(100, 10, 0, 1, 5)
    assert a is not None and len(a) == 10
    np.testing.assert_array_equal(a, batch_indices(100, 10, 0, 1, 5))
    assert batch_indices(100, 0, 0, 1, 5) is None


def test_scaling_from_summed_statistics() -> None:
    x = np.array([[1.0, 5.0], [3.0, 5.0]])
    total = np.concatenate([[2.0], x.sum(0), (x * x).sum(0)])
    mean, scale = scaling_from_stats(total, 2)
    np.testing.assert_allclose(mean, [2.0, 5.0])
    np.testing.assert_allclose(scale, [1.0, 1.0])  # a constant column keeps scale 1


def test_quantized_reference_is_close_to_the_float_one() -> None:
    q = ReferenceTrainer(CFG, quantize=True).run()
    f = ReferenceTrainer(CFG, quantize=False).run()
    assert np.abs(q.theta - f.theta).max() < 1e-3
    assert not np.array_equal(q.theta, f.theta)


def test_saved_model_becomes_an_equivalent_sklearn_estimator(tmp_path: Path) -> None:
    trainer = ReferenceTrainer(CFG)
    state: ModelOwnerState = trainer.run()
    state.save(tmp_path / "model.npz")
    clf = load_sklearn(tmp_path / "model.npz")
    test = trainer.split.test
    assert test is not None
    ours = state.model.predict(state.theta, (test.x - state.mean) / state.scale)
    np.testing.assert_array_equal(clf.predict(test.x), ours)  # the data set's own labels, 0 .. k-1


def test_csv_errors_name_file_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("a,b,label\n1,2,x\n1,oops,y\n")
    with pytest.raises(ConfigError, match=r"d\.csv: line 3, column 'b': 'oops' is not a number"):
        load_csv(str(f), "label", ("x", "y"))
    f.write_text("a,b,label\n1,2,z\n")
    with pytest.raises(ConfigError, match=r"line 2: label 'z' is not one of the classes"):
        load_csv(str(f), "label", ("x", "y"))
    f.write_text("a,b,label\n1,nan,x\n")
    with pytest.raises(ConfigError, match=r"line 2, column 'b': 'nan' is not finite"):
        load_csv(str(f), "label", ("x", "y"))
    with pytest.raises(ConfigError, match="no column 'target'"):
        load_csv(str(f), "target", ("x", "y"))
