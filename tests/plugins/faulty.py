"""Plug-ins for the tests: data from a function, and models that fail for one data owner.

``data`` deals breast_cancer to the data owners as the bundled data set would not: by index
(and the model owner gets a test set); data-owner-2's part has exactly ``MARKED`` rows, which
is how the faulty models below recognise it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from asyncmpc.learning.models.logreg import LogisticRegression

MARKED = 37


def data(player: str, index: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(1).permutation(len(y))
    if index is None:
        rows = order[:120]
    elif index == 2:
        rows = order[120 : 120 + MARKED]
    else:
        rows = np.array_split(order[120 + MARKED :], 2)[index]
    return x[rows], np.array(["benign" if v else "malignant" for v in y[rows]])


class _Faulty(LogisticRegression):
    fault: str = ""

    def loss_and_gradient(self, theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = LogisticRegression.loss_and_gradient(self, theta, x, y)
        if len(y) == MARKED and self.fault == "raises":
            raise RuntimeError("this owner's gradient is broken")
        if len(y) == MARKED and self.fault == "shape":
            return loss, grad[:-1]
        return loss, grad


class Raises(_Faulty):
    fault = "raises"


class WrongShape(_Faulty):
    fault = "shape"


def raises(n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> Raises:
    return Raises(n_features, n_classes)


def wrong_shape(n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> WrongShape:
    return WrongShape(n_features, n_classes)
