"""Privacy ledgers: how many times data was released, the epsilon that has cost, and whether
one more release stays within the budget. ``Budget`` is the model owner's, for one training;
``DataLedger`` a data owner's own, for its data across every training it takes part in.

Every round the model owner opens counts as a release, whether or not it yielded a sum (a
server may have answered before the round failed), and it is counted *before* the round opens:
the count is written durably to ``privacy.json`` in the output folder first (write-ahead), so
a model owner that crashes and resumes knows every round it may have released, including the
one in flight, which it asks again under fresh noise: a second release the accountant sees.

A data owner cannot rely on the model owner's ledger (a deviating model owner ignores it, or
starts afresh) nor on the servers' counts (a restarted server counts from zero). So each data
owner keeps its own, per data set (a digest of the data it holds), in ``[privacy] ledger_dir``,
across runs: it counts, durably and before anything leaves, every answer it gives under
``[privacy]`` (each one an independently sampled release, ``sampling``), and declines once one
more would exceed ``[privacy] epsilon``. It keeps the RDP spent at each order rather than a
count, since RDP adds up whatever each run's settings were.

The epsilon kept within the budget is the proven one for the noise run; the Gaussian-equivalent
figure is reported beside it (``accountant.SkellamAccountant``).
"""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.prf import new_seed
from asyncmpc.errors import OutputError
from asyncmpc.learning.checkpoint import atomic_write
from asyncmpc.learning.privacy.plan import PrivacyPlan

__all__ = ["LEDGER", "Budget", "DataLedger"]

LEDGER = "privacy.json"


class Budget:
    """The ledger of one training; ``folder`` holds its file (None: kept in memory only)."""

    def __init__(self, plan: PrivacyPlan, folder: Path | None = None, *, fresh: bool = False) -> None:
        self.plan = plan
        self.path = None if folder is None else folder / LEDGER
        self.releases = 0
        if self.path is not None and not fresh and self.path.exists():
            self.releases = int(_read(self.path, "it is needed to resume", "releases")[0])
        self._accountant = plan.accountant()

    @property
    def epsilon(self) -> float:
        """The proven epsilon spent so far (at the plan's delta)."""
        return self._accountant.epsilon(self.releases)

    @property
    def gaussian_epsilon(self) -> float:
        """The Gaussian-equivalent epsilon of the releases so far (never above ``epsilon``)."""
        return self._accountant.gaussian_epsilon(self.releases)

    def allows_another(self) -> bool:
        """Whether one more release stays within ``[privacy] epsilon`` (always, with none)."""
        budget = self.plan.settings.epsilon
        return not budget or self._accountant.epsilon(self.releases + 1) <= budget

    def spend(self) -> None:
        """Count one release, durably, before it happens."""
        self.releases += 1
        if self.path is None:
            return
        _write(self.path, {"releases": self.releases})

    def summary(self) -> dict[str, Any]:
        """What metrics.json records."""
        s = self.plan.settings
        return {
            "unit": s.unit,
            "noise_multiplier": self.plan.noise_multiplier,
            "sampling_rate": self.plan.sampling_rate,
            "clip": s.clip,
            "delta": s.delta,
            "epsilon_budget": s.epsilon or None,
            "releases": self.releases,
            "epsilon": self.epsilon,
            "gaussian_epsilon": self.gaussian_epsilon,
        }


class DataLedger:
    """A data owner's own ledger for the data with digest ``fingerprint`` (see the module
    docstring): ``folder/<digest>.json`` holds the releases, the RDP they spent and the unit
    protected (a ledger kept for one unit bounds nothing for the other: mixing them is
    refused). Several processes holding the same data share it: a spend takes a lock on the
    file and adds to what it holds then.

    With mechanism "tree" (DP-FTRL) it also keeps the owner's current tree: a round at
    position p (from 1) is leaf (p - 1) mod T of tree (p - 1) // T (T = ``epoch_steps``). The owner answers each
    leaf of its current tree at most once and in order, with the leaf's part of its examples
    in an order drawn afresh for each tree (``order``); a round of any other tree starts a new
    one, which costs a whole tree's RDP; the tree's other rounds cost nothing."""

    def __init__(self, plan: PrivacyPlan, folder: Path, fingerprint: bytes) -> None:
        from asyncmpc.learning.privacy.accountant import ORDERS

        self.plan = plan
        self.path = folder / f"{fingerprint.hex()[:32]}.json"
        self.releases = 0
        self.rdp = np.zeros(len(ORDERS))
        self.tree: tuple[int, int, bytes] | None = None
        """With mechanism "tree": (the tree, its last leaf answered, the order of its examples' key)."""
        self._tree_terms: list[Any] | None = None
        """What the current tree was paid for (``_terms``): another run goes on with it only under the same."""
        self._round = plan.accountant().round_rdp
        self._load()

    def _load(self) -> None:
        from asyncmpc.learning.privacy.accountant import ORDERS

        if not self.path.exists():
            return
        why = "it is this data's privacy budget"
        releases, orders, rdp, unit, tree = _read(self.path, why, "releases", "orders", "rdp", "unit", "tree?")
        if orders != list(ORDERS) or len(rdp) != len(ORDERS):
            raise OutputError(f"{self.path}: the privacy ledger was kept at other Renyi orders")
        if unit != self.plan.settings.unit:
            raise OutputError(
                f"{self.path}: this data's privacy ledger was kept for [privacy] unit = {unit!r}, which bounds "
                f"nothing for unit = {self.plan.settings.unit!r}; use that unit, or another ledger_dir only if "
                "this data may be released afresh"
            )
        self.releases, self.rdp = int(releases), np.asarray(rdp, dtype=np.float64)
        self.tree = None if tree is None else (int(tree[0]), int(tree[1]), bytes.fromhex(tree[2]))
        self._tree_terms = None if tree is None or len(tree) < 5 else [int(tree[3]), list(tree[4])]

    @property
    def epsilon(self) -> float:
        """The proven epsilon this data has spent, over every run (at this run's delta)."""
        from asyncmpc.learning.privacy.accountant import epsilon_of

        return epsilon_of(self.rdp, self.plan.settings.delta)

    def spend(self, position: int = 1) -> str | None:
        """Count one release, durably, before anything of it leaves: None; or why not (one more
        would exceed ``[privacy] epsilon``; with a tree, a leaf answered already). ``position``:
        the round's position, with mechanism "tree"."""
        from asyncmpc.learning.privacy.accountant import ORDERS, epsilon_of

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            self._load()  # another process on the same data may have spent since
            cost, tree = self._round, None
            if self.plan.settings.mechanism == "tree":
                number, leaf = divmod(position - 1, self.plan.settings.epoch_steps)
                same = self.tree is not None and self.tree[0] == number and self._tree_terms == self._terms()
                if self.tree is not None and same:  # another epoch_steps or noise: a new tree, paid
                    if leaf <= self.tree[1]:
                        return f"position {position}: leaf {leaf} of tree {number} was answered already"
                    cost, tree = np.zeros_like(self._round), (number, leaf, self.tree[2])
                else:
                    tree = (number, leaf, new_seed())
            budget = self.plan.settings.epsilon
            if budget and epsilon_of(self.rdp + cost, self.plan.settings.delta) > budget:
                return (
                    f"its own ledger of this data's releases allows no more: {self.releases} made, epsilon "
                    f"{self.epsilon:.3g} of [privacy] epsilon {budget:g}"
                )
            self.releases += 1
            self.rdp = self.rdp + cost
            self.tree = tree
            state: dict[str, Any] = {"releases": self.releases, "unit": self.plan.settings.unit, "orders": list(ORDERS)}
            state["tree"] = None if tree is None else [tree[0], tree[1], tree[2].hex(), *self._terms()]
            self._tree_terms = None if tree is None else self._terms()
            _write(self.path, {**state, "rdp": self.rdp.tolist()})
        return None

    def _terms(self) -> list[Any]:
        """What a tree's cost was paid for: its leaves and its RDP (a tree goes on only under both)."""
        return [self.plan.settings.epoch_steps, [float(v) for v in self._round]]

    def batch(self, examples: int) -> NDArray[np.int64]:
        """With a tree, the examples of the leaf just spent: its part of the tree's order."""
        assert self.tree is not None
        from asyncmpc.learning.privacy.tree import leaf_rows

        _, leaf, key = self.tree
        return leaf_rows(key, examples, self.plan.settings.epoch_steps, leaf)


def _read(path: Path, why: str, *keys: str) -> list[Any]:
    """The values of ``keys`` in a ledger file (a key ending in "?" may be absent: None);
    OutputError saying ``why`` it is needed."""
    try:
        state = json.loads(path.read_text())
        return [state.get(k[:-1]) if k.endswith("?") else state[k] for k in keys]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"{path}: cannot read the privacy ledger ({exc}); {why}") from None


def _write(path: Path, state: dict[str, Any]) -> None:
    """Write a ledger atomically (the old one or the new one, never half of either)."""
    text = json.dumps(state).encode()

    def write(fh: IO[bytes]) -> None:
        fh.write(text)

    try:
        atomic_write(path, write)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the privacy ledger: {exc.strerror or exc}") from exc
