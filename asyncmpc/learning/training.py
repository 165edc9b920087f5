"""The computations of federated training, shared by the secure roles and the
plaintext reference trainer (no I/O, no sharing).

The model is any ``asyncmpc.learning.models`` model (logistic regression by default). A data owner's
contribution to a round is one float vector: its update, clipped to ``clip_norm``, followed by
its loss. The update is the mean gradient on its (mini-)batch; with ``local_steps = E > 1`` the
owner takes E plain SGD steps of ``local_learning_rate`` on its own batches and the update is
the sum of those E gradients, that is (theta_0 - theta_E) / local_learning_rate (FedAvg,
McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017; the model owner's optimizer treats the mean update as a pseudo-gradient, as
FedOpt does). With ``weighting = "examples"`` the owner contributes ``[n * update, n * loss,
n]`` for its n examples, so the model owner opens only the sums and divides by the total
number of examples: no owner's n is revealed. Before training, each owner contributes
``[n, sum(x), sum(x^2)]`` so the model owner learns the global feature means and variances and
no owner reveals its own. The model owner sees only the sum over the contributor set S (as the
servers reconstruct it), divides by |S| (or the summed n) and takes an optimizer step.

Under ``[privacy]`` (``asyncmpc.learning.privacy``) a contribution is the update alone: with unit
"example", the sum over a Poisson sample of the owner's examples of each example's gradient
clipped to ``[privacy] clip`` (DP-SGD); with unit "owner", the owner's update clipped to the
bound times the owner's sampled bit (so no one sees who took part). Each answer draws its sample
afresh (``privacy.sampling``), and does the same work whoever is in it. No loss and no count are opened: the model
owner divides the noisy sum by the expected number of units, which is public, and reports the
loss on its own test set. Feature scaling then comes from the model owner's own test data, not
from a statistics round over the owners' data, which the noise would not protect.

``ReferenceTrainer`` runs the same rounds in one process with the same data, batches and seeds;
with ``quantize=True`` it also rounds every contribution to the same fixed point and sums in
the ring, so its weights equal the secure run's up to float rounding (the test oracle); with
``quantize=False`` it is the "what did privacy cost" baseline.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.crypto.normproof import clip_to_bound
from asyncmpc.crypto.prf import RandomBytes, new_seed
from asyncmpc.crypto.ring import RingArray, decode, encode, max_abs_value
from asyncmpc.learning.checkpoint import atomic_write
from asyncmpc.learning.data import Dataset, Split, batch_indices, feature_names, load_split
from asyncmpc.learning.export import SavedModel, class_labels, load_model, load_sklearn  # the last three: re-exported
from asyncmpc.learning.models import BuiltModel, accuracy, build_model
from asyncmpc.learning.optim import Optimizer, clip, make_optimizer
from asyncmpc.learning.privacy.sampling import clippable, clipped_sum, poisson_bits
from asyncmpc.learning.privacy.tree import leaf_rows

__all__ = [
    "ModelOwnerState",
    "OwnerWork",
    "ReferenceTrainer",
    "contribution_size",
    "decode_sum",
    "encode_contribution",
    "expected_units",
    "SavedModel",
    "load_model",
    "load_sklearn",
    "model_for",
    "pooled_baseline",
    "scaling_from_stats",
    "stats_of",
    "stats_size",
]

Floats = NDArray[np.float64]


def stats_size(n_features: int) -> int:
    return 1 + 2 * n_features


def model_for(config: Config, n_features: int, n_classes: int) -> BuiltModel:
    """The model ``[training] model`` names, for this data's shape; PluginError if it fails."""
    t = config.training
    return build_model(t.model, n_features, n_classes, t.model_options, t.seed)


def contribution_size(config: Config, model: BuiltModel) -> int:
    """The update, the loss, and with weighting by examples the number of examples; under
    [privacy] the update alone."""
    if config.privacy is not None:
        return model.size
    return model.size + 1 + int(config.training.weighted)


def encode_contribution(config: Config, vector: Floats) -> RingArray:
    """Fixed point for the ring; EncodingError names a NaN, inf or out-of-range element.
    Under [privacy] the owners' sum keeps to half the ring: the noise has the other half."""
    return encode(vector, config.protocol.frac_bits, max_terms=config.input_terms)


def expected_units(config: Config, examples: int) -> float:
    """Under [privacy], what the model owner divides the noisy sum by: the expected number of
    examples (or owners) in a round, ``sampling_rate`` times their public total (``examples``:
    the training split's size when ``[privacy] examples`` is not given)."""
    p = config.privacy
    assert p is not None
    total = len(config.data_owners) if p.unit == "owner" else p.examples or examples
    return p.rate * total


def decode_sum(config: Config, total: RingArray) -> Floats:
    return decode(total, config.protocol.frac_bits)


def stats_of(x: Floats) -> Floats:
    """``[n, sum x, sum x^2]`` of the rows of ``x``: what ``scaling_from_stats`` takes. A sum
    too large for a float is inf, without a warning: encoding it refuses it, naming the element."""
    with np.errstate(over="ignore"):
        return np.concatenate([[float(len(x))], x.sum(axis=0), (x * x).sum(axis=0)])


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

    def __init__(
        self,
        config: Config,
        index: int,
        data: Dataset,
        classes: tuple[str, ...],
        random_bytes: RandomBytes = os.urandom,
    ) -> None:
        self.config = config
        self.index = index
        self.data = data
        self.model = model_for(config, data.x.shape[1], len(classes))
        self.random_bytes = random_bytes
        """Under [privacy]: the source of each sample's key (never sent anywhere)."""

    def stats_vector(self) -> Floats:
        return stats_of(self.data.x)

    def contribution(
        self, theta: Floats, mean: Floats, scale: Floats, round_no: int, rows: NDArray[np.int64] | None = None
    ) -> Floats:
        """This round's clipped update, then the loss at theta (each times n when weighted,
        then n); under [privacy], ``private_contribution`` (``rows``: a tree leaf's examples)."""
        if self.config.privacy is not None:
            return self.private_contribution(theta, mean, scale, round_no, rows)
        t = self.config.training
        n = len(self.data.y)
        update, first_loss = self._local_update(theta, mean, scale, round_no)
        update = clip(update, t.clip_norm)
        if t.weighted:
            return np.concatenate([n * update, [n * first_loss, float(n)]])
        return np.concatenate([update, [first_loss]])

    def _local_update(self, theta: Floats, mean: Floats, scale: Floats, round_no: int) -> tuple[Floats, float]:
        """The sum of the gradients of ``local_steps`` SGD steps on this owner's batches, and
        the loss at the first step."""
        t = self.config.training
        steps, n = t.local_steps, len(self.data.y)
        update: Floats | None = None
        first_loss = 0.0
        for k in range(steps):
            rows = batch_indices(n, t.batch_size, t.seed, self.index, (round_no - 1) * steps + k + 1)
            x = self.data.x if rows is None else self.data.x[rows]
            y = self.data.y if rows is None else self.data.y[rows]
            loss, grad = self.model.gradient(theta, (x - mean) / scale, y)
            first_loss = loss if k == 0 else first_loss
            update = grad if update is None else update + grad
            if k + 1 < steps:
                theta = theta - t.local_learning_rate * grad
        assert update is not None
        return update, first_loss

    def private_contribution(
        self, theta: Floats, mean: Floats, scale: Floats, round_no: int, rows: NDArray[np.int64] | None = None
    ) -> Floats:
        """The update under [privacy] (see the module docstring): a fresh sample, the same work
        whether anything was sampled or not, and a finite vector within the encoding's range
        whatever the data (``sampling.safe_gradient``): the answer depends on the data only
        through the clipped sum. ValueError (a decline) only for a model or scaling that is
        not finite, which says nothing about the data."""
        p = self.config.privacy
        assert p is not None
        for name, arr in (("model", theta), ("mean", mean), ("scale", scale)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"the model update's {name} is not finite")
        key = new_seed(self.random_bytes)
        if p.unit == "example":
            if p.mechanism == "tree":  # the leaf's examples; every example computed all the same
                if rows is None:
                    raise ValueError("a tree round needs its leaf's examples")
                bits = np.zeros(len(self.data.y))
                bits[rows] = 1.0
            else:
                bits = poisson_bits(len(self.data.y), p.rate, key)
            with np.errstate(all="ignore"):
                x = (self.data.x - mean) / scale
            total = clipped_sum(self.model, theta, x, self.data.y, p.clip, bits)[0]
        else:
            try:
                with np.errstate(all="ignore"):
                    update = self._local_update(theta, mean, scale, round_no)[0]
            except Exception:  # a plug-in's failure may depend on the data
                update = np.zeros(self.model.size)
            total = clip(clippable(update), p.clip) * float(poisson_bits(1, p.rate, key)[0])
        bound = max_abs_value(self.config.protocol.frac_bits, self.config.input_terms)
        return np.clip(total, -bound, bound)  # a contraction: the sensitivity holds


@dataclass
class ModelOwnerState:
    """The model, its optimizer and the feature scaling, as the model owner holds them."""

    config: Config
    model: BuiltModel
    classes: tuple[str, ...]
    features: tuple[str, ...] = ()
    """The features' names, when the data names them (the test set's: a CSV header, MNIST's pixels); otherwise
    ``save`` asks ``data.feature_names``."""
    theta: Floats = field(init=False)
    optimizer: Optimizer = field(init=False)
    mean: Floats = field(init=False)
    scale: Floats = field(init=False)

    def __post_init__(self) -> None:
        t = self.config.training
        self.theta = self.model.init()
        self.optimizer = make_optimizer(t.optimizer, self.model.penalised(), t.learning_rate, t.l2, t.momentum)
        self.mean = np.zeros(self.model.n_features)
        self.scale = np.ones(self.model.n_features)

    def set_scaling(self, stats_total: Floats) -> None:
        self.mean, self.scale = scaling_from_stats(stats_total, self.model.n_features)

    def scale_like(self, x: Floats) -> None:
        """Scaling from the model owner's own examples (under [privacy]; none without them)."""
        if len(x):
            self.set_scaling(stats_of(x))

    def apply(self, total: Floats, contributors: int, units: float = 0.0) -> float | None:
        """One optimizer step from the summed contributions; returns the mean loss. Under
        [privacy] the sum is the update alone, divided by the expected ``units``, and the loss
        is not known (None)."""
        if self.config.privacy is not None:
            self.theta = self.optimizer.step(self.theta, total / units)
            return None
        if self.config.training.weighted:
            if not total[-1] >= 1:
                raise ValueError(f"the contributors' examples sum to {total[-1]}")
            mean = total[:-1] / total[-1]
        else:
            mean = total / contributors
        self.theta = self.optimizer.step(self.theta, mean[:-1])
        return float(mean[-1])

    def accuracy(self, test: Dataset | None) -> float | None:
        if test is None or len(test.y) == 0:
            return None
        return accuracy(self.model, self.theta, (test.x - self.mean) / self.scale, test.y)

    def test_loss(self, test: Dataset | None) -> float | None:
        """The loss on the model owner's test set (under [privacy], where no owner's is opened)."""
        if test is None or len(test.y) == 0:
            return None
        return self.model.gradient(self.theta, (test.x - self.mean) / self.scale, test.y)[0]

    def save(self, path: Path) -> None:
        """model.npz: what any model needs to predict (``load_model``): the parameters, the
        model's name, options and shape, the classes, the features' names and scaling; and
        what the model exports (logistic regression: weights and intercept)."""
        t = self.config.training
        features = self.features or feature_names(t.dataset, self.model.n_features)
        arrays = {
            **self.model.export(self.theta),
            "theta": self.theta,
            "model": np.array(t.model),
            "model_options": np.array(json.dumps(t.model_options)),
            "seed": np.array(t.seed),
            "n_features": np.array(self.model.n_features),
            "classes": np.array(self.classes),
            "labels": class_labels(self.config, self.classes),
            "features": np.array(features),
            "mean": self.mean,
            "scale": self.scale,
        }
        atomic_write(path, lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]

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


def pooled_baseline(split: Split, mean: Floats, scale: Floats, model: BuiltModel) -> float | None:
    """Test accuracy of the model's scikit-learn counterpart (``baseline()``: logistic
    regression, MLPClassifier, ...) trained on all owners' data in the clear; None without one."""
    if not split.owners or split.test is None:
        return None
    estimator = model.baseline()
    if estimator is None:
        return None
    x = np.concatenate([d.x for d in split.owners])
    y = np.concatenate([d.y for d in split.owners])
    estimator.fit((x - mean) / scale, y)
    return float(estimator.score((split.test.x - mean) / scale, split.test.y))


class ReferenceTrainer:
    """The same rounds in one process, without secret sharing."""

    def __init__(self, config: Config, *, quantize: bool = True, central_noise: float = 1.0) -> None:
        self.config = config
        self.quantize = quantize
        self.central_noise = central_noise
        """Under [privacy]: Gaussian noise of this many times the plan's variance is added to
        each round's sum in the clear (central DP, the baseline the secure run is compared with)."""
        self.split = load_split(config)
        if not self.split.owners:
            raise ValueError("the reference trainer needs a bundled data set (dataset = 'csv' is per owner)")
        self.owners = [OwnerWork(config, i, d, self.split.classes) for i, d in enumerate(self.split.owners)]
        model = model_for(config, self.split.n_features, len(self.split.classes))
        self.state = ModelOwnerState(config, model, self.split.classes)
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

        private = self.config.privacy is not None
        if private:
            noise, units = self._central_noise(), expected_units(self.config, sum(len(d.y) for d in self.split.owners))
            st.scale_like(self.split.test.x if self.split.test is not None else np.zeros((0, 0)))
        else:
            st.set_scaling(self._sum([o.stats_vector() for o in only(statistics)]))
        leaves = _TreeLeaves(self.config)
        for round_no in range(1, self.config.training.rounds + 1):
            chosen = only(None if contributors is None else contributors[round_no - 1])
            total = self._sum(
                [
                    self._bounded(o.contribution(st.theta, st.mean, st.scale, round_no, leaves.rows(o, round_no)))
                    for o in chosen
                ]
            )
            loss = st.apply(total + noise(), len(chosen), units) if private else st.apply(total, len(chosen))
            if loss is None:
                loss = st.test_loss(self.split.test)
            self.history.append({"round": round_no, "loss": loss, "test_accuracy": st.accuracy(self.split.test)})
        return st

    def _bounded(self, contribution: Floats) -> Floats:
        """What an owner shares under ``[protocol] norm_bound``: its contribution scaled to fit."""
        p = self.config.protocol
        return clip_to_bound(contribution, p.encoded_norm_bound, p.frac_bits) if p.norm_bound else contribution

    def _central_noise(self) -> Callable[[], Floats]:
        """Gaussian noise in the clear, of ``central_noise`` times the plan's variance."""
        from asyncmpc.learning.privacy.noise import secure_generator
        from asyncmpc.learning.privacy.plan import plan_for

        size = self.state.model.size
        std = plan_for(self.config, size).sigma * 2.0**-self.config.protocol.frac_bits * self.central_noise**0.5
        rng = secure_generator()
        return lambda: rng.normal(0.0, std, size)

    def report(self) -> str:
        return json.dumps(self.history)


class _TreeLeaves:
    """With [privacy] mechanism "tree", each owner's examples of round t's leaf, in an order
    drawn afresh for each tree (as a data owner's ledger draws it); None otherwise."""

    def __init__(self, config: Config) -> None:
        p = config.privacy
        self.steps = p.epoch_steps if p is not None and p.mechanism == "tree" else 0
        self._keys: dict[tuple[int, int], bytes] = {}

    def rows(self, owner: OwnerWork, round_no: int) -> NDArray[np.int64] | None:
        if not self.steps:
            return None
        tree, leaf = divmod(round_no - 1, self.steps)
        key = self._keys.setdefault((owner.index, tree), new_seed())
        return leaf_rows(key, len(owner.data.y), self.steps, leaf)
