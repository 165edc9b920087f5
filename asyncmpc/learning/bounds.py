"""Whether a data owner's data can ever be contributed to this deployment (no I/O, no MPC).

Two things no round can change, so an owner that fails either stops with one line naming the
CSV line and column (or the setting) instead of declining every round:

- ``check_statistics``: without ``[privacy]`` the first contribution is the statistics round's
  ``[n, sum x, sum x^2]`` of the owner's raw examples, which must fit the fixed-point ring
  (``crypto.ring.max_abs_value`` for ``[protocol] frac_bits`` and ``max_owners``). An owner
  whose column's sum of squares does not fit is left out of the feature scaling that every
  later round uses, silently; and a value far beyond it (say 1e300) overflows every later
  round too (its scaled features overflow the gradient's norm, then the loss overflows the
  ring). The bound is on the statistics only, so data within it is never refused, whatever
  its scale: breast_cancer's raw areas, up to 4,254, square and sum to under 2e8 per owner,
  against 1.4e11 with the defaults. Under ``[privacy]`` there is no statistics round and every
  contribution is clipped into range, so there is nothing to check.
- ``feature_misfit``: the model owner's model takes as many features as its own data has
  (``StatsRequest.features``, or a model update's scaling); an owner whose data has another
  number (another CSV file, another plug-in's data) can answer no request.

Neither message quotes a value of the data: they name where it is and the bound.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config, Player
from asyncmpc.crypto.ring import max_abs_value
from asyncmpc.errors import ConfigError
from asyncmpc.learning.data import csv_cell, is_plugin
from asyncmpc.learning.training import stats_of

__all__ = ["check_statistics", "feature_misfit"]


def check_statistics(config: Config, player: Player, x: NDArray[np.float64]) -> None:
    """Raise ConfigError, naming the example and feature (a CSV's line and column), if the
    statistics round cannot encode ``[n, sum x, sum x^2]`` of ``x`` (``player``'s examples);
    nothing under ``[privacy]``, which has no statistics round."""
    if config.privacy is not None or not len(x):
        return
    p = config.protocol
    bound = max_abs_value(p.frac_bits, config.input_terms)
    keys = f"[protocol] frac_bits = {p.frac_bits} and max_owners = {p.max_owners}"
    n, d = x.shape
    stats = stats_of(x)  # what the statistics round encodes (inf where a sum overflows)
    if not stats[0] <= bound:
        raise ConfigError(f"{_source(config, player)}: a count of {n} examples does not fit the ring with {keys}")
    fits = np.abs(stats[1 : 1 + d]) <= bound
    fits &= np.abs(stats[1 + d :]) <= bound
    if fits.all():
        return
    col = int(np.flatnonzero(~fits)[0])
    row = int(np.argmax(np.abs(x[:, col])))
    raise ConfigError(
        f"{_where(config, player, row, col)}: too large for the fixed-point ring: the statistics round "
        f"sums the squares of this column's {n} values, which must stay within {bound:.3g} with {keys} "
        f"(values up to {math.sqrt(bound / n):.3g} in magnitude fit); this is the column's largest value: "
        "scale the column down, or lower frac_bits or max_owners"
    )


def feature_misfit(config: Config, player: Player, have: int, want: int) -> str:
    """What ``player`` says when its data has ``have`` features and the model owner's model
    takes ``want``."""
    t = config.training
    if t.dataset == "csv":
        return (
            f"{player.csv}: {have} feature columns besides {player.label_column!r}, but the model owner's "
            f"model takes {want} (as many as its test file has): is this the file meant for this deployment?"
        )
    if is_plugin(t.dataset):
        return (
            f"data plug-in {t.dataset!r} gave {player.name} {have} features, but the model owner's model takes {want}"
        )
    return f"[training] dataset {t.dataset!r} has {have} features here, but the model owner's model takes {want}"


def _source(config: Config, player: Player) -> str:
    if config.training.dataset == "csv" and player.csv is not None:
        return player.csv
    return f"[training] dataset {config.training.dataset!r} ({player.name}'s examples)"


def _where(config: Config, player: Player, row: int, col: int) -> str:
    """Where example ``row``'s feature ``col`` is: a CSV's line and column, else the data set's
    example and feature (counted from 0)."""
    if config.training.dataset == "csv" and player.csv is not None:
        line, column = csv_cell(player.csv, player.label_column, row, col)
        return f"{player.csv}: line {line}, column {column!r}"
    return f"{_source(config, player)}: example {row}, feature {col}"
