"""Layer 6 (no I/O, no MPC): logistic regression in numpy, and its optimizers.

Binary problems use one sigmoid output; problems with k > 2 classes use a softmax over k
outputs. Parameters travel as one flat vector ``theta = concat(W.ravel(), b)`` with W of shape
(n_features, n_outputs). Losses are means over the examples given; L2 regularisation
(``l2 / 2 * ||W||^2``, intercept excluded) is applied by the model owner in ``Optimizer.step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Adam",
    "Model",
    "Optimizer",
    "Sgd",
    "clip",
    "loss_and_gradient",
    "make_optimizer",
    "n_outputs",
]

Floats = NDArray[np.float64]


def n_outputs(n_classes: int) -> int:
    """1 for a binary problem (sigmoid), else one output per class (softmax)."""
    if n_classes < 2:
        raise ValueError(f"logistic regression needs at least 2 classes, got {n_classes}")
    return 1 if n_classes == 2 else n_classes


@dataclass(frozen=True, slots=True)
class Model:
    """Shapes of a model: how a flat theta splits into W and b."""

    n_features: int
    n_classes: int

    @property
    def outputs(self) -> int:
        return n_outputs(self.n_classes)

    @property
    def size(self) -> int:
        return (self.n_features + 1) * self.outputs

    def zeros(self) -> Floats:
        return np.zeros(self.size, dtype=np.float64)

    def split(self, theta: Floats) -> tuple[Floats, Floats]:
        if theta.shape != (self.size,):
            raise ValueError(f"parameter vector of shape {theta.shape}, expected ({self.size},)")
        k = self.outputs
        return theta[: self.n_features * k].reshape(self.n_features, k), theta[self.n_features * k :]

    def logits(self, theta: Floats, x: Floats) -> Floats:
        w, b = self.split(theta)
        return np.asarray(x @ w + b, dtype=np.float64)

    def predict(self, theta: Floats, x: Floats) -> NDArray[np.int64]:
        """Class indices 0..n_classes-1."""
        z = self.logits(theta, x)
        labels = (z[:, 0] > 0) if self.outputs == 1 else np.argmax(z, axis=1)
        return np.asarray(labels, dtype=np.int64)

    def accuracy(self, theta: Floats, x: Floats, y: NDArray[np.int64]) -> float:
        if len(y) == 0:
            return float("nan")
        return float(np.mean(self.predict(theta, x) == y))


def loss_and_gradient(model: Model, theta: Floats, x: Floats, y: NDArray[np.int64]) -> tuple[float, Floats]:
    """Mean cross-entropy over (x, y) and its gradient with respect to theta (no L2 term)."""
    n = len(y)
    if n == 0:
        raise ValueError("no examples to compute a gradient on")
    z = model.logits(theta, x)
    if model.outputs == 1:
        zz = z[:, 0]
        p = 1.0 / (1.0 + np.exp(-zz))
        # log(1 + e^z) - y z, computed stably
        loss = float(np.mean(np.logaddexp(0.0, zz) - y * zz))
        err = (p - y)[:, None]
    else:
        zmax = z.max(axis=1, keepdims=True)
        logsum = np.log(np.exp(z - zmax).sum(axis=1, keepdims=True)) + zmax
        logp = z - logsum
        loss = float(-np.mean(logp[np.arange(n), y]))
        err = np.exp(logp)
        err[np.arange(n), y] -= 1.0
    gw = x.T @ err / n
    gb = err.mean(axis=0)
    return loss, np.concatenate([gw.ravel(), gb])


def clip(g: Floats, bound: float) -> Floats:
    """g scaled down to L2 norm ``bound`` if it is longer."""
    norm = float(np.linalg.norm(g))
    return g * (bound / norm) if norm > bound else g


@dataclass(slots=True)
class Optimizer:
    """Base: ``step`` returns the new theta given the mean data gradient."""

    model: Model
    learning_rate: float
    l2: float

    def regularised(self, theta: Floats, grad: Floats) -> Floats:
        w, _ = self.model.split(theta)
        g = grad.copy()
        g[: w.size] += self.l2 * w.ravel()
        return g

    def step(self, theta: Floats, grad: Floats) -> Floats:
        raise NotImplementedError

    def state(self) -> dict[str, Floats]:
        """What the optimizer carries from step to step (for a checkpoint)."""
        return {}

    def load_state(self, state: dict[str, Floats]) -> None:
        """Continue from ``state()`` of an earlier run."""


@dataclass(slots=True)
class Sgd(Optimizer):
    momentum: float = 0.9
    velocity: Floats | None = None

    def step(self, theta: Floats, grad: Floats) -> Floats:
        g = self.regularised(theta, grad)
        self.velocity = g if self.velocity is None else self.momentum * self.velocity + g
        return theta - self.learning_rate * self.velocity

    def state(self) -> dict[str, Floats]:
        return {} if self.velocity is None else {"velocity": self.velocity}

    def load_state(self, state: dict[str, Floats]) -> None:
        self.velocity = state.get("velocity")


@dataclass(slots=True)
class Adam(Optimizer):
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: Floats = field(default_factory=lambda: np.zeros(0))
    v: Floats = field(default_factory=lambda: np.zeros(0))

    def step(self, theta: Floats, grad: Floats) -> Floats:
        g = self.regularised(theta, grad)
        if self.t == 0:
            self.m = np.zeros_like(theta)
            self.v = np.zeros_like(theta)
        self.t += 1
        self.m = self.beta1 * self.m + (1 - self.beta1) * g
        self.v = self.beta2 * self.v + (1 - self.beta2) * g * g
        m_hat = self.m / (1 - self.beta1**self.t)
        v_hat = self.v / (1 - self.beta2**self.t)
        return theta - self.learning_rate * m_hat / (np.sqrt(v_hat) + self.eps)

    def state(self) -> dict[str, Floats]:
        return {"t": np.array([float(self.t)]), "m": self.m, "v": self.v}

    def load_state(self, state: dict[str, Floats]) -> None:
        self.t, self.m, self.v = int(state["t"][0]), state["m"], state["v"]


def make_optimizer(name: str, model: Model, learning_rate: float, l2: float, momentum: float) -> Optimizer:
    if name == "sgd":
        return Sgd(model, learning_rate, l2, momentum)
    if name == "adam":
        return Adam(model, learning_rate, l2)
    raise ValueError(f"unknown optimizer {name!r}")
