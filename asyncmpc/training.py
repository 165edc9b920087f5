"""Layer 6: the computations of federated training, shared by the secure roles and the
plaintext reference trainer (no I/O, no sharing).

A data owner's contribution to a round is one float vector: its clipped mean gradient on its
local (mini-)batch followed by its loss. Before training, each owner contributes
``[n, sum(x), sum(x^2)]`` so the model owner learns the global feature means and variances and
no owner reveals its own. The model owner sees only the sum over the contributor set S (as the
servers reconstruct it), divides by |S| and takes an optimizer step.

``ReferenceTrainer`` runs the same rounds in one process with the same data, batches and seeds;
with ``quantize=True`` it also rounds every contribution to the same fixed point and sums in
the ring, so its weights equal the secure run's up to float rounding (the test oracle); with
``quantize=False`` it is the "what did privacy cost" baseline.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.checkpoint import atomic_write
from asyncmpc.config import Config
from asyncmpc.data import Dataset, Split, batch_indices, load_split
from asyncmpc.logreg import Model, Optimizer, clip, loss_and_gradient, make_optimizer
from asyncmpc.ring import RingArray, decode, encode

__all__ = [
    "ModelOwnerState",
    "OwnerWork",
    "ReferenceTrainer",
    "contribution_size",
    "decode_sum",
    "encode_contribution",
    "load_sklearn",
    "pooled_baseline",
    "scaling_from_stats",
    "stats_size",
]

Floats = NDArray[np.float64]


def stats_size(n_features: int) -> int:
    return 1 + 2 * n_features


def contribution_size(model: Model) -> int:
    return model.size + 1


def encode_contribution(config: Config, vector: Floats) -> RingArray:
    """Fixed point for the ring; EncodingError names a NaN, inf or out-of-range element."""
    p = config.protocol
    return encode(vector, p.frac_bits, max_terms=p.max_owners)


def decode_sum(config: Config, total: RingArray) -> Floats:
    return decode(total, config.protocol.frac_bits)


def scaling_from_stats(total: Floats, n_features: int) -> tuple[Floats, Floats]:
    """Global feature means and standard deviations from summed ``[n, sum x, sum x^2]``."""
    if total.shape != (stats_size(n_features),):
        raise ValueError(f"statistics of shape {total.shape}, expected ({stats_size(n_features)},)")
    n = total[0]
    if not n >= 1:
        raise ValueError(f"statistics count {n} examples")
    mean = total[1 : 1 + n_features] / n
    var = total[1 + n_features :] / n - mean * mean
    scale = np.sqrt(np.maximum(var, 0.0))
    scale[scale < 1e-9] = 1.0
    return mean, scale


class OwnerWork:
    """What a data owner computes locally, round after round."""

    def __init__(self, config: Config, index: int, data: Dataset, classes: tuple[str, ...]) -> None:
        self.config = config
        self.index = index
        self.data = data
        self.model = Model(data.x.shape[1], len(classes))

    def stats_vector(self) -> Floats:
        x = self.data.x
        return np.concatenate([[float(len(x))], x.sum(axis=0), (x * x).sum(axis=0)])

    def contribution(self, theta: Floats, mean: Floats, scale: Floats, round_no: int) -> Floats:
        """Clipped mean gradient on this round's batch, then the loss on it."""
        t = self.config.training
        rows = batch_indices(len(self.data.y), t.batch_size, t.seed, self.index, round_no)
        x = self.data.x if rows is None else self.data.x[rows]
        y = self.data.y if rows is None else self.data.y[rows]
        loss, grad = loss_and_gradient(self.model, theta, (x - mean) / scale, y)
        return np.concatenate([clip(grad, t.clip_norm), [loss]])


@dataclass
class ModelOwnerState:
    """The model, its optimizer and the feature scaling, as the model owner holds them."""

    config: Config
    model: Model
    classes: tuple[str, ...]
    theta: Floats = field(init=False)
    optimizer: Optimizer = field(init=False)
    mean: Floats = field(init=False)
    scale: Floats = field(init=False)

    def __post_init__(self) -> None:
        t = self.config.training
        self.theta = self.model.zeros()
        self.optimizer = make_optimizer(t.optimizer, self.model, t.learning_rate, t.l2, t.momentum)
        self.mean = np.zeros(self.model.n_features)
        self.scale = np.ones(self.model.n_features)

    def set_scaling(self, stats_total: Floats) -> None:
        self.mean, self.scale = scaling_from_stats(stats_total, self.model.n_features)

    def apply(self, total: Floats, contributors: int) -> float:
        """One optimizer step from the summed contributions; returns the mean loss."""
        mean = total / contributors
        self.theta = self.optimizer.step(self.theta, mean[:-1])
        return float(mean[-1])

    def accuracy(self, test: Dataset | None) -> float | None:
        if test is None or len(test.y) == 0:
            return None
        return self.model.accuracy(self.theta, (test.x - self.mean) / self.scale, test.y)

    def save(self, path: Path) -> None:
        """model.npz: weights, intercept, classes, feature scaling (see ``load_sklearn``)."""
        w, b = self.model.split(self.theta)
        arrays = {"weights": w, "intercept": b, "classes": np.array(self.classes), "mean": self.mean}
        atomic_write(path, lambda fh: np.savez(fh, **arrays, scale=self.scale))  # type: ignore[arg-type]

    def state(self) -> dict[str, Floats]:
        """Everything training needs to go on (for a checkpoint)."""
        opt = {f"optimizer.{k}": v for k, v in self.optimizer.state().items()}
        return {"theta": self.theta, "mean": self.mean, "scale": self.scale, **opt}

    def restore(self, state: dict[str, Floats]) -> None:
        self.theta, self.mean, self.scale = state["theta"], state["mean"], state["scale"]
        if self.theta.shape != (self.model.size,):
            raise ValueError(f"checkpoint has {self.theta.shape} parameters, the model {self.model.size}")
        prefix = "optimizer."
        self.optimizer.load_state({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})


def load_sklearn(path: str | Path) -> Any:
    """A fitted scikit-learn LogisticRegression equivalent to a saved model.npz.

    The feature scaling is folded into the coefficients, so it takes raw (unscaled) features.
    """
    from sklearn.linear_model import LogisticRegression

    with np.load(path) as f:
        w, b, classes, mean, scale = f["weights"], f["intercept"], f["classes"], f["mean"], f["scale"]
    coef = (w / scale[:, None]).T
    intercept = b - coef @ mean
    clf = LogisticRegression()
    clf.classes_ = classes
    clf.coef_ = coef
    clf.intercept_ = intercept
    clf.n_features_in_ = w.shape[0]
    clf.n_iter_ = np.array([0])
    return clf


def pooled_baseline(split: Split, mean: Floats, scale: Floats) -> float | None:
    """Test accuracy of scikit-learn's LogisticRegression trained on all owners' data in the clear."""
    from sklearn.linear_model import LogisticRegression

    if not split.owners or split.test is None:
        return None
    x = np.concatenate([d.x for d in split.owners])
    y = np.concatenate([d.y for d in split.owners])
    clf = LogisticRegression(max_iter=5000).fit((x - mean) / scale, y)
    return float(clf.score((split.test.x - mean) / scale, split.test.y))


class ReferenceTrainer:
    """The same rounds in one process, without secret sharing."""

    def __init__(self, config: Config, *, quantize: bool = True) -> None:
        self.config = config
        self.quantize = quantize
        self.split = load_split(config)
        if not self.split.owners:
            raise ValueError("the reference trainer needs a bundled data set (dataset = 'csv' is per owner)")
        self.owners = [OwnerWork(config, i, d, self.split.classes) for i, d in enumerate(self.split.owners)]
        self.state = ModelOwnerState(config, Model(self.split.n_features, len(self.split.classes)), self.split.classes)
        self.history: list[dict[str, Any]] = []

    def _sum(self, vectors: list[Floats]) -> Floats:
        if not self.quantize:
            return np.asarray(np.sum(vectors, axis=0), dtype=np.float64)
        total = encode_contribution(self.config, vectors[0])
        for v in vectors[1:]:
            total = total + encode_contribution(self.config, v)
        return decode_sum(self.config, total)

    def run(
        self, contributors: Sequence[Collection[str]] | None = None, statistics: Collection[str] | None = None
    ) -> ModelOwnerState:
        """Train every round; ``contributors[t - 1]``, if given, names the owners that round
        ``t`` sums, and ``statistics`` those of the statistics round (as a secure run's
        metrics.json records them)."""
        st = self.state
        names = [p.name for p in self.config.data_owners]

        def only(chosen: Collection[str] | None) -> list[OwnerWork]:
            return [o for o, name in zip(self.owners, names, strict=True) if chosen is None or name in chosen]

        st.set_scaling(self._sum([o.stats_vector() for o in only(statistics)]))
        for round_no in range(1, self.config.training.rounds + 1):
            chosen = only(None if contributors is None else contributors[round_no - 1])
            total = self._sum([o.contribution(st.theta, st.mean, st.scale, round_no) for o in chosen])
            loss = st.apply(total, len(chosen))
            self.history.append({"round": round_no, "loss": loss, "test_accuracy": st.accuracy(self.split.test)})
        return st

    def report(self) -> str:
        return json.dumps(self.history)
