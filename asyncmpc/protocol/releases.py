"""The release rules a compute server keeps from its own hosts.toml (pure).

A server's ``ResultShare`` is a *release*: with the other servers' it opens a sum. What a
release may open protects the data owners, so each honest server enforces it itself, whatever
the model owner asks (DESIGN.md, "Faults and trust"):

1. **Enough contributors, answering one request**: never a sum over fewer than
   ``max(2, min_owners)`` owners (a sum of one owner is that owner's input), and never over
   shares whose ``input_id``s differ: in an honest round every owner answers the same request,
   while a model owner that sent the others a decoy model (one whose gradient encodes to
   zero) would read the one owner's gradient off the sum. In a MAC round the same holds for the
   MAC key (``key_id``): with the victim tagging under one key and the others under another,
   each round's tag sums would give the model owner a linear projection of the victim's input.
2. **One contributor set per round**: a round's sums are released for one set of owners only.
   The same set may be asked again (in full, after a server was lost: the same sums), another
   set may not: the difference of two sums over the same shares is a sum over fewer owners,
   down to one (a malicious model owner would ask for S and for S without the victim).
3. **Inputs released once**: a data owner tags each share with ``input_id``, a digest of what
   it computed the vector from (the model, the scaling and the step it was sent). The same
   inputs come again only when a round is run again (a dispute's MAC re-run, a model owner
   that resumed): a server releases a sum over inputs it released before only over exactly the
   same contributors, so a re-run that leaves one owner out (or adds one) opens nothing. Two
   rounds of the same step over different sets would otherwise open the difference, which is
   one owner's gradient (a lying server that gets the victim left out of the re-run, or a
   model owner that asks the same step twice).

Rule 3 needs the input ids of earlier rounds, across the model owner's epochs (a model owner
that reconnects must not start afresh): ``ReleaseLedger`` keeps, per data owner, the sets its
last ``KEEP_PER_OWNER`` inputs were released over. A data owner keeps the other half itself
(``OwnerAnswers``): it computes again only for its ``RERUN_WINDOW`` newest requests, and never
for a step at or below the highest it answered, so a model owner that waits out the servers'
ledger gets nothing either. That rule takes two ids and one number, however long the run.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Mapping

import numpy as np

from asyncmpc.wire import messages as m
from asyncmpc.wire.messages import Refusal

__all__ = [
    "INPUT_ID_BYTES",
    "KEEP_PER_OWNER",
    "MAX_ANSWERS",
    "RERUN_WINDOW",
    "Ids",
    "OwnerAnswers",
    "ReleaseLedger",
    "input_id",
    "key_id",
]

Ids = tuple[bytes, bytes]
"""A share's (``input_id``, ``key_id``)."""
_NONE: Ids = (b"", b"")
INPUT_ID_BYTES = 16
KEEP_PER_OWNER = 1024
"""Input ids remembered per data owner (16 bytes and a set each)."""
RERUN_WINDOW = 2
"""How many of its newest requests a data owner answers again: a dispute re-runs the newest,
a resumed model owner redoes at most the round in flight and the one it was checkpointing."""
MAX_ANSWERS = 8
"""How often a data owner answers one input id at most: the request, a dispute's re-run, a
re-run after a server was lost, a resumed model owner's, and (with a full batch, where the
answer does not depend on the step) the same model asked again. Each answer is one more set of
shares of the same input; bounding the answers bounds what a model owner that strays from the
protocol can gather of one input, should another rule fail."""
STATS_STEP = -1
"""The step a statistics request counts as: before every training step."""


def input_id(request: m.ModelUpdate | m.StatsRequest) -> bytes:
    """What a data owner's answer to ``request`` is computed from: the same bytes for a re-run
    of the same step (another round number, MAC key or server list), others for anything else.
    The step is always in it, even where an owner's answer does not depend on it (a full batch):
    after a round that yielded nothing the model is unchanged, and the next step must be new
    inputs, or one owner lost mid-round would stop every later round. (A model owner that asks
    the same model at the next step, over other owners, learns no more than with a model one
    unit in the last place away, which nothing here can stop: SECURITY.md.)"""
    h = hashlib.sha256(b"asyncmpc input v1")
    h.update(request.KIND.encode())
    if isinstance(request, m.ModelUpdate):
        h.update(request.step.to_bytes(8, "big"))
        for arr in (request.theta, request.mean, request.scale):
            h.update(repr(arr.shape).encode())
            h.update(np.ascontiguousarray(arr).data)
    return h.digest()[:INPUT_ID_BYTES]


def key_id(mac_key: bytes) -> bytes:
    """Which MAC key an owner tagged with (empty outside MAC rounds). A model owner that sent
    the victim one key and the others another would learn <r_victim - r, x_victim> from the sums
    of a MAC round: one linear projection of the victim's input per round."""
    if not mac_key:
        return b""
    return hashlib.sha256(b"asyncmpc mac key v1" + mac_key).digest()[:INPUT_ID_BYTES]


class ReleaseLedger:
    """One server's memory of what it released (rules 1 and 3; rule 2 lives with the round)."""

    def __init__(self, min_owners: int, keep: int = KEEP_PER_OWNER) -> None:
        self.minimum = max(2, min_owners)
        self.keep = keep
        self._released: dict[str, collections.OrderedDict[bytes, frozenset[str]]] = {}

    def refusal(
        self, contributors: tuple[str, ...], inputs: Mapping[str, Ids], released: frozenset[str] | None
    ) -> tuple[Refusal, str] | None:
        """Why a release over ``contributors`` must not go out (None: it may). ``inputs`` maps
        each contributor to its share's (``input_id``, ``key_id``); ``released`` is the set
        this round was released for already, if any."""
        chosen = frozenset(contributors)
        if len(chosen) < self.minimum:
            return Refusal.TOO_FEW, f"{len(chosen)} contributor(s), fewer than the minimum of {self.minimum}"
        if len({inputs.get(owner, _NONE) for owner in chosen}) > 1:
            return Refusal.MIXED, "the contributors' shares answer different requests (their input or key ids differ)"
        if released is not None and chosen != released:
            return Refusal.OTHER_SET, "its sum was released for another set of contributors"
        for owner in sorted(chosen):
            kept = self._released.get(owner)
            before = None if kept is None else kept.get(inputs.get(owner, _NONE)[0])
            if before is not None and before != chosen:
                return (
                    Refusal.RERUN,
                    f"{owner}'s inputs were released before over another set of contributors "
                    f"({len(before)} owners); a re-run is released over the same set only",
                )
        return None

    def record(self, contributors: tuple[str, ...], inputs: Mapping[str, Ids]) -> None:
        """A release over ``contributors`` went out."""
        chosen = frozenset(contributors)
        for owner in chosen:
            key = inputs.get(owner, _NONE)[0]
            if not key:
                continue
            kept = self._released.setdefault(owner, collections.OrderedDict())
            kept[key] = chosen
            kept.move_to_end(key)
            while len(kept) > self.keep:
                kept.popitem(last=False)


class OwnerAnswers:
    """A data owner's own rule on what it computes (the other half of rule 3), in constant
    memory: the ``RERUN_WINDOW`` newest input ids with how often each was answered, and the
    highest step answered.

    A request is answered when it repeats one of the newest (a re-run; at most ``MAX_ANSWERS``
    times) or asks for a step above every step answered so far. Everything else is refused: an
    earlier request (its step is at or below the highest), and also a new model at an old
    step, which an honest model owner never sends (its steps only grow; a resume repeats the
    newest requests as they were)."""

    def __init__(self, window: int = RERUN_WINDOW, most: int = MAX_ANSWERS) -> None:
        self.most = most
        self._newest: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._window = window
        self._step: int | None = None

    @staticmethod
    def step_of(request: m.ModelUpdate | m.StatsRequest) -> int:
        return request.step if isinstance(request, m.ModelUpdate) else STATS_STEP

    def refusal(self, ident: bytes, step: int) -> str | None:
        """Why the request with input id ``ident`` at ``step`` must not be answered (None: it
        may be)."""
        times = self._newest.get(ident)
        if times is not None:
            return f"asks for the same inputs more than {self.most} times" if times >= self.most else None
        if self._step is not None and step <= self._step:
            return (
                f"asks for step {step}, at or below step {self._step} answered already "
                f"(only the newest {self._window} requests may be run again)"
            )
        return None

    def record(self, ident: bytes, step: int) -> None:
        """The request was answered."""
        self._newest[ident] = self._newest.get(ident, 0) + 1
        self._newest.move_to_end(ident)
        while len(self._newest) > self._window:
            self._newest.popitem(last=False)
        self._step = step if self._step is None else max(self._step, step)
