"""Logistic regression, the default model.

Binary problems use one sigmoid output; problems with k > 2 classes use a softmax over k
outputs. Parameters are ``theta = concat(W.ravel(), b)`` with W of shape (n_features,
n_outputs), initially zero. The loss is the mean cross-entropy; L2 applies to W.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["LogisticRegression", "build", "cross_entropy", "labels_of", "n_outputs", "probabilities_of"]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


def n_outputs(n_classes: int) -> int:
    """1 for a binary problem (sigmoid), else one output per class (softmax)."""
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


def cross_entropy(z: Floats, y: Labels) -> tuple[float, Floats]:
    """Mean cross-entropy of logits z (one column: sigmoid; k columns: softmax), and each
    example's gradient of its own loss with respect to its logits (rows of ``p - onehot(y)``)."""
    n = len(y)
    if n == 0:
        raise ValueError("no examples to compute a gradient on")
    if z.shape[1] == 1:
        zz = z[:, 0]
        p = 1.0 / (1.0 + np.exp(-zz))
        loss = float(np.mean(np.logaddexp(0.0, zz) - y * zz))  # log(1 + e^z) - y z, stably
        return loss, (p - y)[:, None]
    zmax = z.max(axis=1, keepdims=True)
    logp = z - (np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax)
    loss = float(-np.mean(logp[np.arange(n), y]))
    err = np.exp(logp)
    err[np.arange(n), y] -= 1.0
    return loss, err


def labels_of(z: Floats) -> Labels:
    """Class indices from logits (one column: z > 0)."""
    return np.asarray((z[:, 0] > 0) if z.shape[1] == 1 else np.argmax(z, axis=1), dtype=np.int64)


def probabilities_of(z: Floats) -> Floats:
    """Each class's probability from logits, a column per class (one logit column: the
    sigmoid's ``[1 - p, p]``; k columns: the softmax)."""
    if z.shape[1] == 1:
        zz = z[:, 0]  # 1 / (1 + e^-z) and 1 / (1 + e^z), without overflow
        return np.column_stack([np.exp(-np.logaddexp(0.0, zz)), np.exp(-np.logaddexp(0.0, -zz))])
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LogisticRegression:
    """Shapes of the model, and how a flat theta splits into W and b."""

    n_features: int
    n_classes: int

    @property
    def outputs(self) -> int:
        return n_outputs(self.n_classes)

    @property
    def size(self) -> int:
        return (self.n_features + 1) * self.outputs

    def init(self) -> Floats:
        return np.zeros(self.size, dtype=np.float64)

    def split(self, theta: Floats) -> tuple[Floats, Floats]:
        if theta.shape != (self.size,):
            raise ValueError(f"parameter vector of shape {theta.shape}, expected ({self.size},)")
        k = self.outputs
        return theta[: self.n_features * k].reshape(self.n_features, k), theta[self.n_features * k :]

    def logits(self, theta: Floats, x: Floats) -> Floats:
        w, b = self.split(theta)
        return np.asarray(x @ w + b, dtype=np.float64)

    def predict(self, theta: Floats, x: Floats) -> Labels:
        return labels_of(self.logits(theta, x))

    def predict_proba(self, theta: Floats, x: Floats) -> Floats:
        return probabilities_of(self.logits(theta, x))

    def loss_and_gradient(self, theta: Floats, x: Floats, y: Labels) -> tuple[float, Floats]:
        loss, err = cross_entropy(self.logits(theta, x), y)
        return loss, np.concatenate([(x.T @ err / len(y)).ravel(), err.mean(axis=0)])

    def penalised(self) -> NDArray[np.bool_]:
        mask = np.zeros(self.size, dtype=bool)
        mask[: self.n_features * self.outputs] = True
        return mask

    def baseline(self) -> Any:
        from sklearn.linear_model import LogisticRegression as Sklearn

        return Sklearn(max_iter=5000)

    def export(self, theta: Floats) -> dict[str, Floats]:
        """``weights`` and ``intercept``, for a reader of model.npz that does not rebuild the
        model (old model files held only these)."""
        w, b = self.split(theta)
        return {"weights": w, "intercept": b}


def build(n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> LogisticRegression:
    if options:
        raise ValueError(f"logistic regression takes no model_options, got {sorted(options)}")
    return LogisticRegression(n_features, n_classes)
