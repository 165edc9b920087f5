"""A plaintext round (``aggregation = "plain"``, for benchmarks): owners send their gradients
to the model owner in the clear, who adds them (sans-I/O, the same shape as
``AggregationRound``, so one driver runs both).

The round waits for every owner it asked, for at most ``round_timeout``; it yields the sum if
at least ``max(2, min_owners)`` gradients arrived, and nothing otherwise.
"""

from __future__ import annotations

import numpy as np

from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.events import Action, Send, check_sender
from asyncmpc.protocol.outcome import RoundResult
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m

__all__ = ["PlainRound"]


class PlainRound:
    def __init__(self, params: Params, round_no: int, owners: tuple[str, ...], shape: tuple[int, ...]) -> None:
        self.params = params
        self.round_no = round_no
        self.players = owners
        """The players whose messages the round takes."""
        self.shape = shape
        self._waiting = set(owners)
        self._total = np.zeros(shape, dtype=np.float64)
        self._got: list[str] = []
        self._deadline = 0.0
        self.result: RoundResult | None = None

    @property
    def done(self) -> bool:
        return self.result is not None

    def open(self, now: float = 0.0) -> list[Send]:
        self._deadline = now + self.params.round_timeout
        return []  # the requests go to the owners; there are no servers to open

    def feed(self, sender: str, msg: m.Message) -> list[Send]:
        """An owner's gradient or decline. Raises RemoteProtocolError."""
        check_sender(sender, self.params.role(sender), msg, self.params.session)
        if msg.round_no != self.round_no or self.done:
            return []
        if isinstance(msg, m.Decline):
            return self.lose(sender)
        if not isinstance(msg, m.PlainGradient):
            raise RemoteProtocolError(f"unexpected {msg.KIND!r} during a plaintext round", peer=sender)
        if sender not in self._waiting or msg.values.shape != self.shape:
            raise RemoteProtocolError(f"a second or misshapen gradient for round {self.round_no}", peer=sender)
        self._total += msg.values
        self._got.append(sender)
        return self.lose(sender)

    def lose(self, owner: str, reason: str = "") -> list[Send]:
        """Stop waiting for ``owner`` (it answered, declined, or its connection closed)."""
        self._waiting.discard(owner)
        if not self._waiting:
            self._finish()
        return []

    def get_timer(self, now: float) -> float | None:
        return None if self.done else self._deadline

    def handle_timer(self, now: float) -> list[Action]:
        if not self.done and now >= self._deadline:
            self._finish()
        return []

    def _finish(self) -> None:
        got = tuple(self._got)
        if len(got) < max(2, self.params.min_owners):
            self.result = RoundResult(self.round_no, None, got, False, f"only {len(got)} gradient(s) arrived")
        else:
            self.result = RoundResult(self.round_no, self._total, got, False)  # type: ignore[arg-type]
