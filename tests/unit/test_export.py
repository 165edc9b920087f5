"""A model.npz as a data scientist uses it: scikit-learn's own scorers on ``load_sklearn``'s
estimator, and ``load_model``'s predictions, against the data set's own labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import get_scorer

from asyncmpc.config import parse_config
from asyncmpc.learning.data import load_split
from asyncmpc.learning.training import ReferenceTrainer, load_model, load_sklearn
from tests.helpers import hosts_toml

SCORERS = ("accuracy", "roc_auc_ovr", "neg_log_loss", "f1_macro")


def trained(tmp_path: Path, dataset: str) -> tuple[Path, np.ndarray, np.ndarray]:
    cfg = parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=f'dataset = "{dataset}"\nrounds = 40'))
    trainer = ReferenceTrainer(cfg)
    state = trainer.run()
    path = tmp_path / "model.npz"
    state.save(path)
    split = load_split(cfg)
    assert split.test is not None
    return path, split.test.x, split.test.y  # the labels as the data set gives them: 0 .. k-1


@pytest.mark.parametrize("dataset", ["breast_cancer", "digits"])
def test_scikit_learns_scorers_see_the_model_as_it_is(tmp_path: Path, dataset: str) -> None:
    path, x, y = trained(tmp_path, dataset)
    estimator = load_sklearn(path)
    assert list(estimator.classes_) == sorted(set(y.tolist())) and estimator.classes_.dtype.kind == "i"
    saved = load_model(path)
    predicted = saved.predict(x)
    assert predicted.dtype.kind == "i" and (predicted == y).mean() > 0.9  # the data set's own labels
    assert get_scorer("accuracy")(estimator, x, y) == pytest.approx((predicted == y).mean())
    proba = estimator.predict_proba(x)
    truth = proba[np.arange(len(y)), np.searchsorted(estimator.classes_, y)]
    assert get_scorer("neg_log_loss")(estimator, x, y) == pytest.approx(np.mean(np.log(truth)), rel=1e-9)
    scorer = "roc_auc" if len(estimator.classes_) == 2 else "roc_auc_ovr"
    assert get_scorer(scorer)(estimator, x, y) > 0.95
    assert get_scorer("f1_macro")(estimator, x, y) > 0.9


@pytest.mark.parametrize("names", [[4, 2], ["yes", "no"], [2, 4]])
def test_labels_that_sort_the_other_way_keep_every_score(tmp_path: Path, names: list[object]) -> None:
    """A CSV's classes ["4", "2"] (integers, not 0 .. k-1, listed in descending order) or
    ["yes", "no"] (text): the estimator's classes_ are sorted and its weights follow, so every
    scorer gives what it gives with the labels 0, 1."""
    path, x, y = trained(tmp_path, "breast_cancer")
    with np.load(path) as f:
        arrays = dict(f)
    arrays["labels"] = np.array(names)
    renamed = tmp_path / "renamed.npz"
    np.savez(renamed, **arrays)
    y_named = np.array(names)[y]
    original, estimator = load_sklearn(path), load_sklearn(renamed)
    assert list(estimator.classes_) == sorted(names)  # type: ignore[type-var]
    for name in ("accuracy", "roc_auc", "neg_log_loss", "f1_macro"):
        assert get_scorer(name)(estimator, x, y_named) == pytest.approx(get_scorer(name)(original, x, y)), name
    assert (load_model(renamed).predict(x) == np.array(names)[load_model(path).predict(x)]).all()
