"""A saved model.npz read back: for prediction (``load_model``) and as a fitted scikit-learn
estimator (``load_sklearn``); and the labels a model is saved with (no I/O beyond the file).

A model's classes are indices 0 .. k-1 in the order of the training data's classes; a saved
model gives them back as the training data's own labels (``class_labels``). scikit-learn keeps
``classes_`` sorted and reads its probability columns in that order, so an exported estimator's
classes are sorted and its output weights reordered to match.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.errors import PluginError
from asyncmpc.learning.models import BuiltModel, build_model
from asyncmpc.learning.models.logreg import LogisticRegression
from asyncmpc.learning.models.mlp import Mlp

__all__ = ["SavedModel", "class_labels", "load_model", "load_sklearn"]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class SavedModel:
    """A model.npz read back: it predicts class labels from raw (unscaled) features, as the
    training data gives them (``class_labels``: a bundled data set's 0 .. k-1, a CSV's labels
    as integers when they all are)."""

    model: BuiltModel
    theta: Floats
    classes: NDArray[Any]
    """Each class index's label."""
    mean: Floats
    scale: Floats
    features: tuple[str, ...] | None = None
    """The names of the features, in the order the model takes them (None: a model saved
    before names were kept)."""

    @property
    def sorted_classes(self) -> NDArray[Any]:
        """The labels sorted, as scikit-learn keeps ``classes_``: ``predict_proba``'s columns."""
        return np.sort(self.classes, kind="stable")

    def predict(self, x: Floats) -> NDArray[Any]:
        return self.classes[self.model.predict(self.theta, (x - self.mean) / self.scale)]

    def predict_proba(self, x: Floats) -> Floats:
        """Each class's probability, a column per label of ``sorted_classes``; PluginError for
        a plug-in model without ``predict_proba``."""
        proba = self.model.predict_proba(self.theta, (x - self.mean) / self.scale)
        return proba[:, np.argsort(self.classes, kind="stable")]


def class_labels(config: Config, classes: Sequence[str]) -> NDArray[Any]:
    """The label of each class as the training data gives it: a bundled data set's targets are
    0 .. k-1 (its names stay in ``classes``); a CSV's or a plug-in's labels are text, read as
    integers when every one is an integer (so they compare with the integer labels a user
    holds), else kept as text."""
    if config.training.dataset not in ("csv", "synthetic") and ":" not in config.training.dataset:
        return np.arange(len(classes))
    try:
        return np.array([int(c) for c in classes])
    except ValueError:
        return np.array(list(classes))


def load_model(path: str | Path) -> SavedModel:
    """Read a model.npz and rebuild its model (a plug-in is imported again); ValueError or
    KeyError if it is not one, PluginError if its model cannot be built."""
    with np.load(path) as f:
        classes, mean, scale = f["labels"] if "labels" in f else f["classes"], f["mean"], f["scale"]
        features = tuple(str(n) for n in f["features"]) if "features" in f else None
        if "theta" in f:
            spec, options = str(f["model"]), json.loads(str(f["model_options"]))
            theta, seed = f["theta"], int(f["seed"])
        else:  # written before models were plug-ins: logistic regression
            spec, options, seed = "logreg", {}, 0
            theta = np.concatenate([f["weights"].ravel(), f["intercept"]])
    model = build_model(spec, len(mean), len(classes), options, seed)
    if theta.shape != (model.size,):
        raise PluginError(f"{path}: {theta.shape[0]} parameters, but model {spec!r} has {model.size}")
    if features is not None and len(features) != model.n_features:
        raise ValueError(f"{len(features)} feature names for {model.n_features} features")
    return SavedModel(model, theta, classes, mean, scale, features)


def load_sklearn(path: str | Path) -> Any:
    """A fitted scikit-learn estimator equivalent to a saved model.npz: a ``LogisticRegression``
    for logistic regression, an ``MLPClassifier`` for the MLP; PluginError naming the model
    for any other (a plug-in: ``load_model`` predicts with it).

    The feature scaling is folded into the first layer's weights, so it takes raw (unscaled)
    features. Its ``classes_`` are the training labels (``class_labels``), sorted as
    scikit-learn keeps them, with the output weights in the same order, so its scorers (ROC
    AUC, log loss) read the right column for each class.
    """
    saved = load_model(path)
    impl = saved.model.impl
    if isinstance(impl, LogisticRegression):
        w, b = impl.split(saved.theta)
        return _logistic_regression(*_output_layer(saved, *_scaled(saved, w, b)), saved)
    if isinstance(impl, Mlp):
        return _mlp(impl, saved)
    raise PluginError(
        f"{path}: model {saved.model.spec!r} has no scikit-learn counterpart (load_sklearn exports logreg and mlp); "
        "asyncmpc.learning.export.load_model(path) predicts with it"
    )


def _scaled(saved: SavedModel, w: Floats, b: Floats) -> tuple[Floats, Floats]:
    """A first layer that takes raw features: ``((x - mean) / scale) @ w + b`` as ``x @ w' + b'``."""
    w_raw = w / saved.scale[:, None]
    return w_raw, b - saved.mean @ w_raw


def _output_layer(saved: SavedModel, w: Floats, b: Floats) -> tuple[Floats, Floats]:
    """The output layer's columns in the order of the sorted labels: a single (sigmoid) output
    is class 1's logit, negated when the sorted labels put class 1 first."""
    order = np.argsort(saved.classes, kind="stable")
    if w.shape[1] == 1:
        sign = 1.0 if order[1] == 1 else -1.0
        return sign * w, sign * b
    return w[:, order], b[order]


def _logistic_regression(w: Floats, b: Floats, saved: SavedModel) -> Any:
    from sklearn.linear_model import LogisticRegression as Sklearn

    clf = Sklearn()
    clf.classes_ = saved.sorted_classes
    clf.coef_, clf.intercept_ = w.T.copy(), b.copy()
    clf.n_features_in_ = w.shape[0]
    clf.n_iter_ = np.array([0])
    return clf


def _mlp(impl: Mlp, saved: SavedModel) -> Any:
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import LabelBinarizer

    layers = [(w.copy(), b.copy()) for w, b in impl.layers(saved.theta)]
    layers[0] = _scaled(saved, *layers[0])
    layers[-1] = _output_layer(saved, *layers[-1])
    clf = MLPClassifier(hidden_layer_sizes=impl.hidden, activation=impl.activation, random_state=impl.seed)
    clf.coefs_ = [w for w, _ in layers]
    clf.intercepts_ = [b for _, b in layers]
    clf.n_layers_ = len(layers) + 1
    clf.n_outputs_ = layers[-1][0].shape[1]
    clf.out_activation_ = "logistic" if clf.n_outputs_ == 1 else "softmax"
    clf._label_binarizer = LabelBinarizer().fit(saved.sorted_classes)
    clf.classes_ = clf._label_binarizer.classes_
    clf.n_features_in_ = impl.n_features
    clf.n_iter_ = 0
    return clf
