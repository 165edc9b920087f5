"""The model owner's optimizers, and clipping.

``step`` takes the current parameters and the mean contribution of a round (a gradient, or
with local steps the sum of an owner's local gradients: FedOpt's pseudo-gradient, Reddi et
al., "Adaptive Federated Optimization", ICLR 2021) and returns the new parameters. L2
regularisation (``l2 / 2 * ||theta[penalised]||^2``) is added here, once, by the model owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = ["Adam", "Optimizer", "Sgd", "clip", "make_optimizer"]

Floats = NDArray[np.float64]


def clip(g: Floats, bound: float) -> Floats:
    """g scaled down to L2 norm ``bound`` if it is longer."""
    norm = float(np.linalg.norm(g))
    return g * (bound / norm) if norm > bound else g


@dataclass(slots=True)
class Optimizer:
    """Base: ``step`` returns the new theta given the mean data gradient."""

    penalised: NDArray[np.bool_]
    """Which parameters the L2 term applies to (the model's weights)."""
    learning_rate: float
    l2: float

    def regularised(self, theta: Floats, grad: Floats) -> Floats:
        return grad + self.l2 * np.where(self.penalised, theta, 0.0) if self.l2 else grad.copy()

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


def make_optimizer(
    name: str, penalised: NDArray[np.bool_], learning_rate: float, l2: float, momentum: float
) -> Optimizer:
    if name == "sgd":
        return Sgd(penalised, learning_rate, l2, momentum)
    if name == "adam":
        return Adam(penalised, learning_rate, l2)
    raise ValueError(f"unknown optimizer {name!r}")
