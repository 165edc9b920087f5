"""A multilayer perceptron in numpy, the second built-in model.

Hidden layers of ``model_options.hidden_layers`` units (default ``[32]``) with
``model_options.activation`` (``relu``, ``tanh``, ``logistic``; default ``relu``), and the
output layer of logistic regression (one sigmoid output for two classes, else a softmax), so
it is scikit-learn's ``MLPClassifier`` with the same architecture. Parameters are
``concat(W1.ravel(), b1, W2.ravel(), b2, ...)``; the initial ones are drawn as scikit-learn
draws them (Glorot uniform, U(-s, s) with s = sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for
logistic units) from a generator seeded by ``[training] seed`` (not a secret: every data owner
could compute it). L2 applies to the weights, not the intercepts.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.learning.models.logreg import cross_entropy, labels_of, n_outputs, probabilities_of

__all__ = ["ACTIVATIONS", "Mlp", "build"]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


def _relu(z: Floats) -> Floats:
    return np.maximum(z, 0.0)


def _logistic(z: Floats) -> Floats:
    return 1.0 / (1.0 + np.exp(-z))


ACTIVATIONS: dict[str, tuple[Callable[[Floats], Floats], Callable[[Floats], Floats]]] = {
    # name: (f(z), f'(z) written in terms of a = f(z))
    "relu": (_relu, lambda a: (a > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda a: 1.0 - a * a),
    "logistic": (_logistic, lambda a: a * (1.0 - a)),
}


@dataclass(frozen=True)
class Mlp:
    n_features: int
    n_classes: int
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    seed: int = 0

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_features, *self.hidden, n_outputs(self.n_classes))

    @property
    def size(self) -> int:
        w = self.widths
        return sum((a + 1) * b for a, b in itertools.pairwise(w))

    def layers(self, theta: Floats) -> list[tuple[Floats, Floats]]:
        """Views of theta as (W, b) per layer."""
        if theta.shape != (self.size,):
            raise ValueError(f"parameter vector of shape {theta.shape}, expected ({self.size},)")
        out, at = [], 0
        for a, b in itertools.pairwise(self.widths):
            w = theta[at : at + a * b].reshape(a, b)
            out.append((w, theta[at + a * b : at + a * b + b]))
            at += (a + 1) * b
        return out

    def init(self) -> Floats:
        rng = np.random.default_rng([self.seed, 5])
        factor = 2.0 if self.activation == "logistic" else 6.0
        parts = []
        for a, b in itertools.pairwise(self.widths):
            bound = np.sqrt(factor / (a + b))
            parts += [rng.uniform(-bound, bound, a * b), rng.uniform(-bound, bound, b)]
        return np.concatenate(parts)

    def _forward(self, theta: Floats, x: Floats) -> tuple[list[Floats], Floats]:
        f = ACTIVATIONS[self.activation][0]
        layers = self.layers(theta)
        acts = [x]
        for w, b in layers[:-1]:
            acts.append(f(acts[-1] @ w + b))
        w, b = layers[-1]
        return acts, np.asarray(acts[-1] @ w + b, dtype=np.float64)

    def predict(self, theta: Floats, x: Floats) -> Labels:
        return labels_of(self._forward(theta, x)[1])

    def predict_proba(self, theta: Floats, x: Floats) -> Floats:
        return probabilities_of(self._forward(theta, x)[1])

    def loss_and_gradient(self, theta: Floats, x: Floats, y: Labels) -> tuple[float, Floats]:
        acts, z = self._forward(theta, x)
        loss, err = cross_entropy(z, y)
        derivative = ACTIVATIONS[self.activation][1]
        delta = err / len(y)
        grads: list[Floats] = []
        layers = self.layers(theta)
        for i in range(len(layers) - 1, -1, -1):
            w, _ = layers[i]
            grads += [delta.sum(axis=0), (acts[i].T @ delta).ravel()]  # reversed below
            if i:
                delta = (delta @ w.T) * derivative(acts[i])
        return loss, np.concatenate(grads[::-1])

    def penalised(self) -> NDArray[np.bool_]:
        mask = np.zeros(self.size, dtype=bool)
        at = 0
        for a, b in itertools.pairwise(self.widths):
            mask[at : at + a * b] = True
            at += (a + 1) * b
        return mask

    def baseline(self) -> Any:
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(
            hidden_layer_sizes=self.hidden, activation=self.activation, max_iter=2000, random_state=self.seed
        )


def build(n_features: int, n_classes: int, options: Mapping[str, Any], seed: int) -> Mlp:
    unknown = sorted(set(options) - {"hidden_layers", "activation"})
    if unknown:
        raise ValueError(f"unknown model_options {unknown} (the mlp takes hidden_layers, activation)")
    hidden = options.get("hidden_layers", [32])
    if not isinstance(hidden, list | tuple) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ValueError(f"model_options.hidden_layers = {hidden!r}: expected a list of positive integers")
    activation = options.get("activation", "relu")
    if activation not in ACTIVATIONS:
        raise ValueError(f"model_options.activation = {activation!r}: expected one of {', '.join(ACTIVATIONS)}")
    return Mlp(n_features, n_classes, tuple(hidden), activation, seed)
