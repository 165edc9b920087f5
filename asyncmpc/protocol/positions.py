"""Under [privacy] mechanism "tree" (DP-FTRL), the positions a server deals noise for (pure).

A round at position p (from 1) carries the noise of leaf (p - 1) mod T of tree (p - 1) // T (``learning.privacy.tree``,
T = ``epoch_steps``), which the server derives from its own secret key: the same position dealt
twice would carry the same noise twice, and two releases of it over different inputs would
differ by a noise-free sum. So a server deals each position once, in increasing order, whatever
the model owner asks (a position skipped releases nothing and costs nothing); a restarted server
has another key, so its nodes are new, independent noise. With a budget, it deals no position of
a tree beyond those the budget allows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from asyncmpc.wire.messages import Refusal

__all__ = ["Positions"]


@dataclass(slots=True)
class Positions:
    steps: int
    """Rounds per tree (``epoch_steps``)."""
    trees_for: Callable[[int], int | None]
    """Size -> how many trees the budget allows for contributions of that size (None: no budget)."""
    next: int = 1
    """The lowest position this server still deals."""

    def take(self, position: int, size: int) -> tuple[Refusal, str] | None:
        """Deal ``position`` (None), or why not."""
        if position < self.next:  # also 0 and below: no position
            return Refusal.RERUN, f"position {position} was dealt already (or one after it): positions only increase"
        trees = self.trees_for(size)
        if trees is not None and (position - 1) // self.steps >= trees:
            return Refusal.BUDGET, f"the [privacy] budget allows {trees} trees of {self.steps} rounds"
        self.next = position + 1
        return None
