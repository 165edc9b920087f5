"""Which owners a round sums, from what the servers report holding (pure).

Each server that reported says which owners' complete shares it holds (``Holding``, or the
contributors of its early answer). ``Reports`` answers the model owner's questions about
them: who holds what between them, which servers to ask for the sum and over whom, and which
server, if any, is the odd one out.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Reports"]

Servers = tuple[str, ...]


class Reports:
    """What the servers of a round reported holding (server -> owners)."""

    def __init__(self) -> None:
        self.holding: dict[str, frozenset[str]] = {}

    def held_by(self, servers: Iterable[str], base: frozenset[str]) -> frozenset[str]:
        """The owners of ``base`` that every one of ``servers`` reports."""
        return base.intersection(*(self.holding[s] for s in servers))

    def choose(
        self, live: tuple[str, ...], base: frozenset[str], *, mac: bool
    ) -> tuple[tuple[str, ...], frozenset[str]]:
        """The servers to ask and the owners they all hold. An ordinary round asks every
        server that reported, for the owners all of them hold. A MAC round may leave out the
        odd one of three, when the other two hold more between them (any two servers hold
        every component, and the MAC checks what two servers answer): a server that denies
        holding an owner, truly or not, then costs that owner nothing."""
        asked = tuple(s for s in live if s in self.holding)
        everyone = self.held_by(asked, base)
        if not mac or len(asked) < 3:
            return asked, everyone
        pairs = [(a, b) for i, a in enumerate(asked) for b in asked[i + 1 :]]
        best = max(pairs, key=lambda pair: len(self.held_by(pair, base)))
        most = self.held_by(best, base)
        return (best, most) if len(most) > len(everyone) else (asked, everyone)

    def odd_one_out(self, asked: tuple[str, ...], held: frozenset[str], base: frozenset[str]) -> str | None:
        """Of three servers: the one that reports fewer owners than the other two hold between
        them (None if there is no single such server). Its report cannot be checked by the
        model owner (the share may not have reached it, or it lies), and the two others cannot
        leave those owners out (their vectors are in the sums): in an ordinary round that is a
        dispute, to run again as a MAC round, which the two can complete."""
        if len(asked) < 3:
            return None
        odd = [s for s in asked if len(self.held_by((o for o in asked if o != s), base)) > len(held)]
        return odd[0] if len(odd) == 1 else None

    def deniers(self, asked: tuple[str, ...], contributors: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
        """Of ``asked``: those that did not report an owner another reported (and the owners
        so left out of ``contributors``)."""
        held = frozenset().union(*(self.holding[s] for s in asked))
        left_out = held - set(contributors)
        return tuple(s for s in asked if not left_out <= self.holding[s]), left_out
