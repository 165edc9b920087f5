"""A model.npz as a data scientist uses it: scikit-learn's own scorers on ``load_sklearn``'s
estimator agree with the same quantities computed from our model's own probabilities, and with
scikit-learn's estimator fitted on the same labels and given the same weights; ``load_model``
predicts the data's own labels; the features' names are kept."""

from __future__ import annotations

import csv
import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.metrics import get_scorer

from asyncmpc.config import Config, parse_config
from asyncmpc.errors import ConfigError, PluginError
from asyncmpc.learning.data import Dataset, load_features
from asyncmpc.learning.export import load_model, load_sklearn
from asyncmpc.learning.training import ModelOwnerState, ReferenceTrainer
from asyncmpc.learning.workload import ModelWorkload
from tests.helpers import hosts_toml

PORTS = [9000, 9001, 9002, 9003]
DIGITS_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def config(training: str, **kwargs: Any) -> Config:
    return parse_config(hosts_toml(3, ports=PORTS, training=training, **kwargs), "t.toml")


@functools.cache
def trained(model: str, dataset: str) -> tuple[ModelOwnerState, Dataset]:
    """A short real training (the same for every label case of this model and data set)."""
    training = f'dataset = "{dataset}"\nmodel = "{model}"\nrounds = 30'
    if model == "mlp":
        training += "\n[training.model_options]\nhidden_layers = [12]"
    trainer = ReferenceTrainer(config(training))
    state = trainer.run()
    assert trainer.split.test is not None
    return state, trainer.split.test


def write_csv(path: Path, x: np.ndarray, labels: list[str]) -> list[str]:
    """A CSV of these rows with the label column between the features; returns the feature names."""
    names = [f"v{i}" for i in range(x.shape[1])]
    header = [*names[:2], "label", *names[2:]]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(
            [
                [*map(repr, row[:2].tolist()), label, *map(repr, row[2:].tolist())]
                for row, label in zip(x, labels, strict=True)
            ]
        )
    return names


def saved(tmp_path: Path, model: str, dataset: str, classes: list[str] | None) -> tuple[Path, np.ndarray]:
    """model.npz of the trained weights: as the bundled data set's run saves it (``classes``
    None), or as a run on CSV files whose labels are ``classes`` (class i: the data set's i)
    saves it. Returns its path and the labels of the test rows as the data gives them."""
    state, test = trained(model, dataset)
    path = tmp_path / "model.npz"
    if classes is None:
        state.save(path)
        return path, test.y
    table = tmp_path / "test.csv"
    write_csv(table, test.x, [classes[i] for i in test.y])
    quoted = ", ".join(f'"{c}"' for c in classes)
    training = f'dataset = "csv"\nclasses = [{quoted}]\nmodel = "{model}"\nrounds = 30'
    if model == "mlp":
        training += "\n[training.model_options]\nhidden_layers = [12]"
    extra = {name: f'csv = "{table}"' for name in ["model-owner", "data-owner-0", "data-owner-1", "data-owner-2"]}
    work = ModelWorkload(config(training, extra=extra), "model-owner")
    work.model_state.theta, work.model_state.mean, work.model_state.scale = state.theta, state.mean, state.scale
    work.save(path)
    as_ints = all(c.lstrip("-").isdigit() for c in classes)
    labels = np.array([int(c) for c in classes]) if as_ints else np.array(classes)
    return path, labels[test.y]


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: the chance a positive outscores a negative."""
    ranks = rankdata(score)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def own_scores(state: ModelOwnerState, x: np.ndarray, y: np.ndarray, ones: int | None) -> dict[str, float]:
    """Each scorer's quantity from our model's own probabilities and predictions, by class
    index (``y``: 0 .. k-1 in the training data's order; ``ones``: the index of the label 1)."""
    z = (x - state.mean) / state.scale
    proba = state.model.predict_proba(state.theta, z)
    predicted = state.model.predict(state.theta, z)
    k = proba.shape[1]
    eps = np.finfo(np.float64).eps
    truth = np.clip(proba, eps, 1 - eps)[np.arange(len(y)), y]

    def f1(c: int) -> float:
        tp = np.sum((predicted == c) & (y == c))
        return float(2 * tp / (np.sum(predicted == c) + np.sum(y == c)))

    scores = {
        "accuracy": float(np.mean(predicted == y)),
        "neg_log_loss": float(np.mean(np.log(truth))),
        "f1_macro": float(np.mean([f1(c) for c in range(k)])),
        # binary: either class's column ranks the rows the same way round
        "roc_auc" if k == 2 else "roc_auc_ovr": (
            auc(proba[:, 1], y == 1) if k == 2 else float(np.mean([auc(proba[:, c], y == c) for c in range(k)]))
        ),
    }
    if ones is not None and k == 2:
        scores["f1"] = f1(ones)
    return scores


def fitted_like(estimator: Any, x: np.ndarray, y: np.ndarray) -> Any:
    """scikit-learn's own estimator of the same kind, fitted on these labels, then given the
    exported estimator's weights."""
    from sklearn.base import clone
    from sklearn.exceptions import ConvergenceWarning

    fitted = clone(estimator).set_params(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the weights are replaced below
        fitted.fit(x, y)
    for name in ("coef_", "intercept_", "coefs_", "intercepts_"):
        if hasattr(estimator, name):
            setattr(fitted, name, getattr(estimator, name))
    return fitted


CASES = [
    ("breast_cancer", None, "i"),  # bundled: 0, 1
    ("digits", None, "i"),  # bundled: 0 .. 9
    ("breast_cancer", ["yes", "no"], "U"),  # CSV text labels, sorted the other way round
    ("breast_cancer", ["4", "2"], "i"),  # CSV integers, not 0 .. k-1, descending
    ("wine", ["9", "3", "7"], "i"),  # three integers in no order
    ("digits", DIGITS_WORDS, "U"),  # ten text labels, whose sorted order is not the training order
    ("digits", [str(10 * (9 - d)) for d in range(10)], "i"),  # ten integers, descending
]


@pytest.mark.parametrize("model", ["logreg", "mlp"])
@pytest.mark.parametrize(("dataset", "classes", "kind"), CASES, ids=lambda v: str(v)[:24])
def test_every_scikit_learn_scorer_agrees_with_our_own_model(
    tmp_path: Path, model: str, dataset: str, classes: list[str] | None, kind: str
) -> None:
    state, test = trained(model, dataset)
    path, y = saved(tmp_path, model, dataset, classes)
    estimator = load_sklearn(path)
    assert type(estimator).__name__ == {"logreg": "LogisticRegression", "mlp": "MLPClassifier"}[model]
    assert estimator.classes_.tolist() == sorted(set(y.tolist()))
    assert estimator.classes_.dtype.kind == y.dtype.kind == kind  # the training labels' type
    fitted = fitted_like(estimator, test.x, y)
    assert fitted.classes_.tolist() == estimator.classes_.tolist()
    ones = 1 if classes is None else None  # only the bundled data set has a label 1 (scorer "f1")
    for name, value in own_scores(state, test.x, test.y, ones).items():
        assert get_scorer(name)(estimator, test.x, y) == pytest.approx(value, rel=1e-9, abs=1e-12), name
        assert get_scorer(name)(fitted, test.x, y) == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert get_scorer("accuracy")(estimator, test.x, y) > 0.85
    # load_model predicts the same labels, and its probabilities are in scikit-learn's column order
    again = load_model(path)
    assert again.predict(test.x).tolist() == estimator.predict(test.x).tolist()
    assert again.predict(test.x).dtype.kind == kind
    assert again.sorted_classes.tolist() == estimator.classes_.tolist()
    np.testing.assert_allclose(again.predict_proba(test.x), estimator.predict_proba(test.x), atol=1e-12)


def test_model_npz_keeps_the_features_names_of_each_kind_of_data(tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    state, _ = trained("logreg", "wine")
    state.save(tmp_path / "bundled.npz")
    assert load_model(tmp_path / "bundled.npz").features == tuple(load_wine().feature_names)
    saved(tmp_path, "logreg", "wine", ["a", "b", "c"])  # the label column sits between v1 and v2
    assert load_model(tmp_path / "model.npz").features == tuple(f"v{i}" for i in range(13))
    plugin = ModelWorkload(
        config('dataset = "tests.plugins.faulty:data"\nclasses = ["malignant", "benign"]'), "model-owner"
    )
    plugin.save(tmp_path / "plugin.npz")
    assert load_model(tmp_path / "plugin.npz").features == tuple(f"f{i}" for i in range(30))


def test_a_plug_in_model_is_not_exported_but_named_in_one_line(tmp_path: Path) -> None:
    trainer = ReferenceTrainer(config('dataset = "wine"\nmodel = "examples.poly_softmax:build"\nrounds = 2'))
    trainer.run().save(tmp_path / "model.npz")
    with pytest.raises(PluginError) as caught:
        load_sklearn(tmp_path / "model.npz")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'model.npz'}: model 'examples.poly_softmax:build' ")
    assert "load_model" in message  # what to use instead
    assert trainer.split.test is not None
    with pytest.raises(PluginError, match=r"^model plug-in 'examples.poly_softmax:build' has no predict_proba"):
        load_model(tmp_path / "model.npz").predict_proba(trainer.split.test.x)


def test_a_plug_ins_probabilities_are_checked() -> None:
    from asyncmpc.learning.models import build_model

    model = build_model("logreg", 2, 3, {}, 0)
    x = np.ones((4, 2))
    model.impl = type("Odd", (), {"predict_proba": lambda self, theta, x: np.full((len(x), 2), 0.5)})()  # type: ignore[assignment]
    with pytest.raises(PluginError, match=r"predict_proba returned shape \(4, 2\), expected \(4, 3\)"):
        model.predict_proba(np.zeros(9), x)
    model.impl = type("Odd", (), {"predict_proba": lambda self, theta, x: np.full((len(x), 3), 0.5)})()  # type: ignore[assignment]
    with pytest.raises(PluginError, match="predict_proba returned rows that are not probabilities"):
        model.predict_proba(np.zeros(9), x)


def test_columns_are_found_by_name_and_a_file_without_a_header_is_refused(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    f = tmp_path / "t.csv"
    f.write_text("c,id,a,b\n3,x9,1,2\n6,x8,4,5\n")  # reordered, with a column the model does not take
    assert load_features(str(f), "label", names).tolist() == [[1, 2, 3], [4, 5, 6]]
    f.write_text("c,a,b,a\n3,1,2,1\n")
    with pytest.raises(ConfigError, match=r"t\.csv: the header has column 'a' 2 times$"):
        load_features(str(f), "label", names)
    f.write_text("a,label,x\n1,0,2\n")
    with pytest.raises(ConfigError, match=r"t\.csv: the header has no column 'b', 'c' \(the model takes 3 features\)$"):
        load_features(str(f), "label", names)
    f.write_text("1,2,3\n4,5,6\n")
    with pytest.raises(ConfigError, match=r"t\.csv: line 1 is numbers, not a header naming the model's 3 features"):
        load_features(str(f), "label", names)
    assert load_features(str(f), "label", names, no_header=True).tolist() == [[1, 2, 3], [4, 5, 6]]
    f.write_text("1,2,3\n4,5\n")
    with pytest.raises(ConfigError, match=r"t\.csv: line 2 has 2 fields, the model takes 3 features$"):
        load_features(str(f), "label", names, no_header=True)
    f.write_text("x,label,y,z\n1,?,2,3\n")  # a model that keeps no names: every column but the label
    assert load_features(str(f), "label").tolist() == [[1, 2, 3]]
