"""An asyncmpc model plug-in, written outside the package: softmax regression on the
features and their powers up to ``degree`` (``model_options.degree``, default 2).

Use it with ``[training] model = "examples.poly_softmax:build"`` from the project's folder
(see ``examples/hosts.toml``). A plug-in is a *builder*: it gets the number of features and
classes, the ``[training.model_options]`` table and ``[training] seed``, and returns an object
with ``n_features``, ``n_classes``, ``size`` and four methods (``init``, ``loss_and_gradient``,
``predict``, ``penalised``); ``baseline`` (a scikit-learn estimator to compare with) and
``export`` (extra arrays for model.npz) are optional. Parameters are one flat float64 vector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class PolySoftmax:
    def __init__(self, n_features: int, n_classes: int, degree: int) -> None:
        self.n_features = n_features
        self.n_classes = n_classes
        self.degree = degree
        self.inputs = n_features * degree
        self.size = (self.inputs + 1) * n_classes  # W (inputs x classes), then b (classes)

    def expand(self, x: np.ndarray) -> np.ndarray:
        return np.hstack([x**k for k in range(1, self.degree + 1)])

    def _split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cut = self.inputs * self.n_classes
        return theta[:cut].reshape(self.inputs, self.n_classes), theta[cut:]

    def init(self) -> np.ndarray:
        return np.zeros(self.size)

    def loss_and_gradient(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = self._split(theta)
        f = self.expand(x)
        z = f @ w + b
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        n = len(y)
        loss = -float(logp[np.arange(n), y].mean())
        err = np.exp(logp)
        err[np.arange(n), y] -= 1.0
        return loss, np.concatenate([(f.T @ err / n).ravel(), err.mean(axis=0)])

    def predict(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        w, b = self._split(theta)
        return np.argmax(self.expand(x) @ w + b, axis=1)

    def penalised(self) -> np.ndarray:
        return np.arange(self.size) < self.inputs * self.n_classes

    def baseline(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import FunctionTransformer

        return make_pipeline(FunctionTransformer(self.expand), LogisticRegression(max_iter=5000))


def build(n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> PolySoftmax:
    degree = options.get("degree", 2)
    if not isinstance(degree, int) or degree < 1:
        raise ValueError(f"model_options.degree = {degree!r}: expected a positive integer")
    return PolySoftmax(n_features, n_classes, degree)
