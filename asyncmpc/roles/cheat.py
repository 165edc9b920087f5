"""For tests only: a compute server that lies, or a data owner that equivocates, to
show that lies are caught and pinned on the liar.

``ASYNCMPC_TEST_CHEAT=WHAT:WHEN`` in a compute server's environment makes it alter what it
sends the model owner (a deployment never sets it; the server logs a warning when it does):

- WHAT: ``vector`` (its full result component a), ``tag`` (the Poly1305 tag of b in an
  ordinary round, b itself when sent in full, the field MAC sum ma in a MAC round), ``both``,
  ``holding`` (it denies holding the first owner, in place of its result or in its
  ``Holding``), or
  ``nothing`` (it answers every round with a ``Holding`` of no owner).
- WHEN: ``once`` (the first chance only), ``every``, ``ordinary`` (only in ordinary rounds),
  ``mac`` (only in MAC rounds, such as the re-run of a disputed round).

``ASYNCMPC_TEST_EQUIVOCATE=1`` in a data owner's environment makes it send the last server a
different vector component than the one the middle server gets (both hold it).
``ASYNCMPC_TEST_WITHHOLD=SERVER`` makes a data owner send that server nothing (its other two
servers get their shares as usual).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np

from asyncmpc.crypto.field import P
from asyncmpc.errors import ConfigError
from asyncmpc.protocol.events import Action, Send
from asyncmpc.wire import messages as m

__all__ = ["CHEAT_ENV", "EQUIVOCATE_ENV", "WITHHOLD_ENV", "Cheat", "owner_cheat"]

CHEAT_ENV = "ASYNCMPC_TEST_CHEAT"
EQUIVOCATE_ENV = "ASYNCMPC_TEST_EQUIVOCATE"
WITHHOLD_ENV = "ASYNCMPC_TEST_WITHHOLD"
WHAT = ("vector", "tag", "both", "holding", "nothing")
WHEN = ("once", "every", "ordinary", "mac")


class Cheat:
    """Alters a server's outgoing messages as ``what`` and ``when`` say (see the module)."""

    def __init__(self, what: str, when: str) -> None:
        if what not in WHAT or when not in WHEN:
            raise ConfigError(f"{CHEAT_ENV}: expected WHAT:WHEN with WHAT in {WHAT} and WHEN in {WHEN}")
        self.what, self.when = what, when
        self.done = 0

    @classmethod
    def from_env(cls) -> Cheat | None:
        spec = os.environ.get(CHEAT_ENV)
        if not spec:
            return None
        what, _, when = spec.partition(":")
        return cls(what, when or "every")

    def __call__(self, actions: list[Action]) -> list[Action]:
        return [dataclasses.replace(a, msg=self.alter(a.msg)) if isinstance(a, Send) else a for a in actions]

    def alter(self, msg: m.Message) -> m.Message:
        if not isinstance(msg, (m.ResultShare, m.Holding)):
            return msg
        mac = (msg.ma is not None) if isinstance(msg, m.ResultShare) else bool(msg.digests)
        if (self.when == "once" and self.done) or (self.when == "ordinary" and mac) or (self.when == "mac" and not mac):
            return msg
        if self.what == "nothing":
            out: m.Message = m.Holding(session=msg.session, round_no=msg.round_no, owners=())
        elif self.what == "holding":
            out = self._holding(msg, mac)
        else:
            out = self._result(msg)
        if out is not msg:
            self.done += 1
        return out

    def _result(self, msg: m.Message) -> m.Message:
        if not isinstance(msg, m.ResultShare):
            return msg
        changes: dict[str, object] = {}
        if self.what in ("vector", "both"):
            changes["a"] = _plus_one(msg.a)
        if self.what in ("tag", "both"):
            if msg.ma is not None:
                ma = msg.ma.copy()
                ma[0] = (int(ma[0]) + 1) % P
                changes["ma"] = ma
            elif msg.b is not None:
                changes["b"] = _plus_one(msg.b)
            else:
                changes["b_tag"] = bytes([msg.b_tag[0] ^ 1]) + msg.b_tag[1:]
        return dataclasses.replace(msg, **changes)  # type: ignore[arg-type]

    @staticmethod
    def _holding(msg: m.ResultShare | m.Holding, mac: bool) -> m.Message:
        owners = msg.contributors if isinstance(msg, m.ResultShare) else msg.owners
        if len(owners) < 2:
            return msg
        return m.Holding(session=msg.session, round_no=msg.round_no, owners=tuple(owners[1:]), digests=msg.digests[1:])


def _plus_one(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[0] += 1
    return out


def owner_cheat() -> tuple[str, Callable[[list[Send]], list[Send]]] | None:
    """For a data owner with ``EQUIVOCATE_ENV`` or ``WITHHOLD_ENV`` set: what it does (for its
    log) and a function that alters its shares so."""
    withheld = os.environ.get(WITHHOLD_ENV)
    if withheld:
        return f"withholds its shares from {withheld}", lambda sends: [s for s in sends if s.to != withheld]
    if not os.environ.get(EQUIVOCATE_ENV):
        return None

    def alter(sends: list[Send]) -> list[Send]:
        out = []
        for send in sends:
            msg = send.msg
            if isinstance(msg, m.InputShare) and isinstance(msg.a, np.ndarray) and not isinstance(msg.b, np.ndarray):
                send = dataclasses.replace(send, msg=dataclasses.replace(msg, a=_plus_one(msg.a)))
            out.append(send)
        return out

    return "sends two servers different shares", alter
