"""What the model owner trains and what data owners contribute (no I/O, no MPC).

``ModelWorkload`` is federated training of a model (``asyncmpc.learning.models``) on a data
set; ``SyntheticWorkload`` sends a fixed random gradient of ``[training] parameters`` elements
every round, so the aggregation itself can be measured at any size without a data set.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config, Player
from asyncmpc.crypto.prf import new_seed
from asyncmpc.errors import ConfigError, PluginError
from asyncmpc.learning.bounds import check_statistics
from asyncmpc.learning.checkpoint import atomic_write
from asyncmpc.learning.data import Dataset, listed, load_split, owner_data
from asyncmpc.learning.optim import clip
from asyncmpc.learning.privacy.sampling import poisson_bits
from asyncmpc.learning.training import (
    ModelOwnerState,
    OwnerWork,
    contribution_size,
    expected_units,
    model_for,
    pooled_baseline,
    stats_size,
)

__all__ = [
    "OwnerWorkload",
    "SyntheticOwner",
    "SyntheticWorkload",
    "Workload",
    "owner_workload",
    "synthetic_mean",
    "workload",
]

Floats = NDArray[np.float64]
_EMPTY = np.zeros(0, dtype=np.float64)


class Workload(Protocol):
    """The model owner's side."""

    stats_size: int
    """Length of the statistics round's vector; 0: no statistics round."""
    size: int
    feature_names: tuple[str, ...]
    """The model's features' names, in order, where the data names them (a CSV header)."""

    def set_stats(self, total: Floats) -> None: ...
    def update(self) -> tuple[Floats, Floats, Floats]: ...
    def apply(self, total: Floats, contributors: int) -> tuple[float | None, float | None]: ...
    def save(self, path: Path) -> None: ...
    def final(self) -> dict[str, Any]: ...
    def state(self) -> dict[str, Floats]: ...
    def restore(self, state: dict[str, Floats]) -> None: ...


class ModelWorkload:
    def __init__(self, config: Config, name: str) -> None:
        self.split = load_split(config)
        if self.split.n_features < 1:
            if config.training.dataset == "csv":
                raise ConfigError(
                    f'{config.path}: [players.{name}] csv: the model owner needs a test file when dataset = "csv"'
                )
            raise PluginError(f"data plug-in {config.training.dataset!r} returned no test set for {name}")
        model = model_for(config, self.split.n_features, len(self.split.classes))
        features = self.split.test.features if self.split.test is not None else ()
        self.feature_names = features
        self.model_state = ModelOwnerState(config, model, self.split.classes, features)
        self.stats_size = stats_size(self.split.n_features)
        self.size = contribution_size(config, model)
        self.units = 0.0
        if config.privacy is not None:  # no statistics round: scaling from the test set
            self.stats_size = 0
            if self.split.test is not None:
                self.model_state.scale_like(self.split.test.x)
            self.units = expected_units(config, sum(len(d.y) for d in self.split.owners))

    def set_stats(self, total: Floats) -> None:
        self.model_state.set_scaling(total)

    def update(self) -> tuple[Floats, Floats, Floats]:
        return self.model_state.theta, self.model_state.mean, self.model_state.scale

    def apply(self, total: Floats, contributors: int) -> tuple[float | None, float | None]:
        loss = self.model_state.apply(total, contributors, self.units)
        if loss is None:
            loss = self.model_state.test_loss(self.split.test)
        return loss, self.model_state.accuracy(self.split.test)

    def save(self, path: Path) -> None:
        self.model_state.save(path)

    def state(self) -> dict[str, Floats]:
        return self.model_state.state()

    def restore(self, state: dict[str, Floats]) -> None:
        self.model_state.restore(state)

    def final(self) -> dict[str, Any]:
        """The summary for metrics.json. Under [privacy] it has no scikit-learn model fitted
        on the owners' pooled raw data: the outputs hold nothing computed from their data but
        the noisy sums."""
        config = self.model_state.config
        t = config.training
        pooled = None
        if config.privacy is None:
            pooled = pooled_baseline(self.split, self.model_state.mean, self.model_state.scale, self.model_state.model)
        return {
            "model": t.model,
            "local_steps": t.local_steps,
            "weighting": "examples" if t.weighted else "owners",
            "classes": list(self.split.classes),
            "final_test_accuracy": self.model_state.accuracy(self.split.test),
            "sklearn_pooled_accuracy": pooled,
        }


class SyntheticWorkload:
    """Plain averaging of fixed random gradients: theta <- theta - learning_rate * mean."""

    stats_size = 0
    feature_names: tuple[str, ...] = ()

    def __init__(self, config: Config) -> None:
        self.size = config.training.parameters
        self.learning_rate = config.training.learning_rate
        self.theta = np.zeros(self.size, dtype=np.float64)

    def set_stats(self, total: Floats) -> None:
        raise AssertionError("a synthetic workload has no statistics round")

    def update(self) -> tuple[Floats, Floats, Floats]:
        return self.theta, _EMPTY, _EMPTY

    def apply(self, total: Floats, contributors: int) -> tuple[float | None, float | None]:
        # a new array: the last one may still be on its way to the data owners
        self.theta = self.theta - self.learning_rate * (total / contributors)
        return None, None

    def save(self, path: Path) -> None:
        atomic_write(path, lambda fh: np.savez(fh, theta=self.theta))

    def state(self) -> dict[str, Floats]:
        return {"theta": self.theta}

    def restore(self, state: dict[str, Floats]) -> None:
        if state["theta"].shape != (self.size,):
            raise ValueError(f"checkpoint has {state['theta'].shape} parameters, expected {self.size}")
        self.theta = state["theta"]

    def final(self) -> dict[str, Any]:
        return {"final_test_accuracy": None, "sklearn_pooled_accuracy": None}


def workload(config: Config, name: str) -> Workload:
    if config.training.dataset == "synthetic":
        return SyntheticWorkload(config)
    return ModelWorkload(config, name)


class OwnerWorkload(Protocol):
    """A data owner's side."""

    def stats_vector(self) -> Floats: ...
    def contribution(
        self, theta: Floats, mean: Floats, scale: Floats, round_no: int, rows: NDArray[np.int64] | None = None
    ) -> Floats:
        """This round's contribution; ``rows``: with a DP-FTRL tree, the examples of its leaf."""
        ...

    def describe(self) -> str: ...
    @property
    def features(self) -> int:
        """How many features its examples have (0: none, a synthetic gradient)."""
        ...

    @property
    def examples(self) -> int:
        """How many examples this owner holds (a tree's leaves split them)."""
        ...

    @property
    def size(self) -> int:
        """The length of a training contribution."""
        ...

    def fingerprint(self) -> bytes:
        """A digest of the data this owner holds: its own privacy ledger is kept per data set."""
        ...

    @property
    def column_names(self) -> tuple[str, ...]:
        """Its features' names, where its data names them (a CSV header)."""
        ...

    def match_columns(self, names: tuple[str, ...]) -> str | None:
        """Take the features in the order of ``names`` (the model owner's): a line to log if
        its columns moved, None if nothing changed; ConfigError naming the columns that one
        side has and the other lacks."""
        ...


class LocalTraining:
    """A data owner's side of training a model on its own examples."""

    def __init__(self, config: Config, player: Player) -> None:
        data, classes = owner_data(config, player)
        assert player.index is not None
        self.player = player
        check_statistics(config, player, data.x)
        self.work = OwnerWork(config, player.index, data, classes)

    def stats_vector(self) -> Floats:
        return self.work.stats_vector()

    @property
    def features(self) -> int:
        return self.work.model.n_features

    @property
    def examples(self) -> int:
        return len(self.work.data.y)

    def contribution(
        self, theta: Floats, mean: Floats, scale: Floats, round_no: int, rows: NDArray[np.int64] | None = None
    ) -> Floats:
        model = self.work.model
        if mean.shape != (model.n_features,) or scale.shape != (model.n_features,):
            raise ValueError(f"model update has scaling for {mean.shape} features, this owner has {model.n_features}")
        if theta.shape != (model.size,):
            raise ValueError(f"model update has {theta.shape[0]} parameters, expected {model.size}")
        return self.work.contribution(theta, mean, scale, round_no, rows)

    @property
    def size(self) -> int:
        return contribution_size(self.work.config, self.work.model)

    def fingerprint(self) -> bytes:
        return _rows_digest(self.work.data.x)

    @property
    def column_names(self) -> tuple[str, ...]:
        return self.work.data.features

    def match_columns(self, names: tuple[str, ...]) -> str | None:
        data = self.work.data
        if not names or not data.features or names == data.features:
            return None  # data that names no columns (a bundled set) is the same everywhere
        where = self.player.csv or f"[training] dataset {self.work.config.training.dataset!r}"
        own = set(data.features)
        if len(names) != len(data.features) or len(set(names)) != len(names) or set(names) != own:
            wanted = set(names)  # sets: a schema of a million names costs one pass
            missing = [n for n in dict.fromkeys(names) if n not in own]
            extra = [n for n in data.features if n not in wanted]
            said = [f"no column {listed(missing)}"] if missing else []
            said += [f"columns {listed(extra)} besides"] if extra else []
            raise ConfigError(
                f"{where}: its columns are not the model owner's ({'; '.join(said) or 'a name twice'}): "
                f"the model takes {listed(list(names))}"
            )
        order = [data.features.index(n) for n in names]
        self.work.data = Dataset(data.x[:, order], data.y, names)
        return f"{where}: columns taken in the model owner's order ({listed(list(names))})"

    def describe(self) -> str:
        x = self.work.data.x
        return f"{x.shape[0]} examples with {x.shape[1]} features for model {self.work.model.spec!r}"


@functools.lru_cache(maxsize=2)
def _synthetic_base(seed: int, size: int) -> Floats:
    base = np.random.default_rng([seed, 3]).uniform(-1.0, 1.0, size)
    base.flags.writeable = False
    return base


class SyntheticOwner:
    """A fixed gradient in [-1, 1): one random vector (seeded, not a secret), rotated by the
    owner's index, so a swarm of owners in one process shares one vector's memory. Under
    ``[privacy]`` it is clipped and sampled as an owner's update is."""

    def __init__(self, config: Config, player: Player) -> None:
        self.base = _synthetic_base(config.training.seed, config.training.parameters)
        self.shift = (player.index or 0) * 7919
        self.privacy = config.privacy

    @property
    def gradient(self) -> Floats:
        return np.roll(self.base, self.shift)

    def stats_vector(self) -> Floats:
        raise ValueError("a synthetic workload has no statistics round")

    @property
    def features(self) -> int:
        return 0

    @property
    def examples(self) -> int:
        return 1

    def contribution(
        self, theta: Floats, mean: Floats, scale: Floats, round_no: int, rows: NDArray[np.int64] | None = None
    ) -> Floats:
        if theta.shape != self.base.shape:
            raise ValueError(f"model update has {theta.shape[0]} parameters, expected {self.base.size}")
        if self.privacy is None:
            return self.gradient
        # as a data owner under [privacy] (unit "owner"): clipped, times a fresh sampled bit
        bit = float(poisson_bits(1, self.privacy.rate, new_seed())[0])
        return clip(self.gradient, self.privacy.clip) * bit

    @property
    def size(self) -> int:
        return int(self.base.size)

    def fingerprint(self) -> bytes:
        return _rows_digest(self.gradient[None, :])

    @property
    def column_names(self) -> tuple[str, ...]:
        return ()

    def match_columns(self, names: tuple[str, ...]) -> str | None:
        return None

    def describe(self) -> str:
        return f"a synthetic gradient of {self.base.size} parameters"


def _rows_digest(x: NDArray[np.float64]) -> bytes:
    """A digest of the examples' features as a set: the same data gives the same digest
    whatever the order of its rows and however its labels are named (``[training] classes``),
    so an owner's privacy ledger follows its data, not how a run reads it."""
    rows = sorted(hashlib.sha256(np.ascontiguousarray(row, dtype=np.float64).tobytes()).digest() for row in x)
    h = hashlib.sha256(b"asyncmpc data v2")
    h.update(str(x.shape[1:]).encode())
    for row in rows:
        h.update(row)
    return h.digest()


def owner_workload(config: Config, player: Player) -> OwnerWorkload:
    if config.training.dataset == "synthetic":
        return SyntheticOwner(config, player)
    return LocalTraining(config, player)


def synthetic_mean(config: Config, owners: int) -> Floats:
    """The exact mean of the first ``owners`` synthetic gradients (for checking a benchmark)."""
    total = np.zeros(config.training.parameters)
    for p in config.data_owners[:owners]:
        total += SyntheticOwner(config, p).gradient
    return total / owners
