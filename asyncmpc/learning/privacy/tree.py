"""Tree aggregation of noise for DP-FTRL (pure): which nodes' noise a release carries.

DP-FTRL (Kairouz, McMahan, Song, Thakkar, Thakurta and Xu, "Practical and Private (Deep)
Learning without Sampling or Shuffling", ICML 2021) releases noisy *prefix sums* of the
rounds' gradient sums, with the noise of the binary-tree mechanism (Dwork, Naor, Pitassi and
Rothblum 2010; Chan, Shi and Song 2011): leaves are the steps 0 .. T-1 of a tree, node
(l, m) covers the leaves [m 2^l, (m + 1) 2^l) and carries its own independent noise, and the
prefix of the first j leaves carries the noise of the at most ``depth(T)`` nodes of its binary
decomposition. A round releases the *increment* of the prefix sums: its gradient sum plus the
noise of decomposition(j + 1) minus that of decomposition(j), so the prefix sums of the releases
carry exactly the tree's noise (the model owner's SGD on the increments is FTRL on the noisy
prefix sums). An example is in one leaf per tree, so in at most ``depth(T)`` nodes: one tree
costs ``depth(T)`` times one node's Renyi DP (``accountant.tree_epoch_rdp``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.prf import expand

__all__ = ["Node", "decomposition", "depth", "increment", "leaf_rows"]

Node = tuple[int, int]
"""(level l, index m): the node covering leaves [m 2^l, (m + 1) 2^l)."""


def depth(steps: int) -> int:
    """The most nodes any leaf of a tree of ``steps`` leaves is in, and the most a prefix is
    made of: ceil(log2(steps + 1)) (dp-accounting's ``SingleEpochTreeAggregationDpEvent``)."""
    if steps < 1:
        raise ValueError(f"a tree of {steps} steps")
    return math.ceil(math.log2(steps + 1))


def decomposition(prefix: int) -> list[Node]:
    """The nodes whose leaves are exactly the first ``prefix`` leaves, largest first: one per
    set bit of ``prefix``."""
    if prefix < 0:
        raise ValueError(f"a prefix of {prefix} leaves")
    nodes: list[Node] = []
    start = 0
    for level in range(prefix.bit_length() - 1, -1, -1):
        if prefix >> level & 1:
            nodes.append((level, start >> level))
            start += 1 << level
    return nodes


def increment(step: int) -> tuple[list[Node], list[Node]]:
    """The nodes whose noise release ``step`` (0-based) adds, and those it takes away: the
    decomposition of the first step + 1 leaves minus that of the first step. One node comes
    in (the one that step + 1's lowest set bit closes), and the smaller ones it covers go out."""
    if step < 0:
        raise ValueError(f"step {step}")
    before, after = set(decomposition(step)), set(decomposition(step + 1))
    return sorted(after - before), sorted(before - after)


def leaf_rows(key: bytes, examples: int, steps: int, leaf: int) -> NDArray[np.int64]:
    """An owner's examples in leaf ``leaf`` of a tree of ``steps`` leaves: its part of the order
    of the ``examples`` drawn by AES-CTR under ``key`` (new for each tree), so each example is
    in one leaf of the tree."""
    order = np.argsort(expand(key, examples).view(np.uint64), kind="stable")
    return np.array_split(order, steps)[leaf].astype(np.int64)
