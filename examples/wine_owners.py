"""An asyncmpc data plug-in, written outside the package: each data owner's examples from a
function instead of a file.

Use it with ``[training] dataset = "examples.wine_owners:load"`` and ``classes`` (see
``examples/hosts.toml``). The function is called once in every data owner as
``load(player_name, index)`` (index 0, 1, ... in the order of hosts.toml) and once in the model
owner with index None; it returns ``(x, y)``: a row of numbers per example and one label per
row, from ``[training] classes`` (compared as text). The model owner's call returns its test
set (or None). Here every process cuts scikit-learn's wine data the same way; in a real
deployment each data owner would read its own records.
"""

from __future__ import annotations

import numpy as np


def load(player: str, index: int | None) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_wine

    data = load_wine()
    order = np.random.default_rng(0).permutation(len(data.target))  # the same cut in every process
    test, train = order[:45], order[45:]
    rows = test if index is None else np.array_split(train, 3)[index % 3]
    return data.data[rows], data.target[rows]
