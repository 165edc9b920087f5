"""Attackers and fault injection for tests, applied to what a player sends: through the
in-process transport (``Hub(tamper=...)``) or around a real player's ``Node``
(``tampering_opener``, used by ``tests/players/attacker.py``). Production code reads no
switch: a lying server is an honest server whose messages are changed on their way out.

- ``Liar(what, when)``: a compute server that alters what it sends the model owner. WHAT:
  ``vector`` (its full result component a), ``tag`` (the Poly1305 tag of b in an ordinary
  round, b itself when sent in full, the field MAC sum ma in a MAC round), ``both``,
  ``holding`` (it denies holding the first owner, in place of its result or in its
  ``Holding``), or ``nothing`` (it answers every round with a ``Holding`` of no owner). WHEN:
  ``once`` (the first chance only), ``every``, ``ordinary`` (only in ordinary rounds), ``mac``
  (only in MAC rounds, such as the re-run of a disputed round).
- ``equivocate``: a data owner that sends the last server a different vector component than
  the one the middle server gets (both hold it).
- ``withhold(server)``: a data owner that sends that server nothing.
- ``MaskTrace(path, name)``: not an attack: records, per masked value a data owner sends, a
  digest of the stream key and the nonce (never the key), to check that no pair repeats.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np

from asyncmpc.config import Config
from asyncmpc.crypto.field import P
from asyncmpc.crypto.prf import round_nonce
from asyncmpc.crypto.rss import Keyed, Seed
from asyncmpc.net.runtime import Node
from asyncmpc.net.transport import Greeting
from asyncmpc.wire import messages as m

Alter = Callable[[str, m.Message], m.Message | None]
"""(receiver, message) -> the message sent in its place, or None to send nothing."""

WHAT = ("vector", "tag", "both", "holding", "nothing")
WHEN = ("once", "every", "ordinary", "mac")


class Liar:
    """Alters a server's messages to the model owner as ``what`` and ``when`` say."""

    def __init__(self, what: str, when: str = "every") -> None:
        if what not in WHAT or when not in WHEN:
            raise ValueError(f"expected WHAT:WHEN with WHAT in {WHAT} and WHEN in {WHEN}, got {what}:{when}")
        self.what, self.when = what, when
        self.done = 0

    def alter(self, msg: m.Message) -> m.Message:
        if not isinstance(msg, (m.ResultShare, m.Holding)):
            return msg
        mac = (msg.ma is not None) if isinstance(msg, m.ResultShare) else bool(msg.digests)
        if (self.when == "once" and self.done) or (self.when == "ordinary" and mac) or (self.when == "mac" and not mac):
            return msg
        if self.what == "nothing":
            out: m.Message = m.Holding(session=msg.session, round_no=msg.round_no, owners=())
        elif self.what == "holding":
            out = _deny_first(msg)
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


def _deny_first(msg: m.ResultShare | m.Holding) -> m.Message:
    owners = msg.contributors if isinstance(msg, m.ResultShare) else msg.owners
    if len(owners) < 2:
        return msg
    return m.Holding(session=msg.session, round_no=msg.round_no, owners=tuple(owners[1:]), digests=msg.digests[1:])


def _plus_one(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out.reshape(-1)[0] += 1
    return out


def equivocate(to: str, msg: m.Message) -> m.Message:
    """The owner's second holder of its vector component gets another vector."""
    if isinstance(msg, m.InputShare) and isinstance(msg.a, np.ndarray) and not isinstance(msg.b, np.ndarray):
        return dataclasses.replace(msg, a=_plus_one(msg.a))
    return msg


def withhold(server: str) -> Alter:
    return lambda to, msg: None if to == server and isinstance(msg, m.InputShare) else msg


class MaskTrace:
    """Appends ``NAME DIGEST NONCE`` to ``path`` for every (stream key, nonce) that masked a
    value this owner sent: each answer's masks once (a seed reaches two servers), its keyed
    components under the keys it registered (``ShareKeys``) at the round's nonce."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self.keys: dict[str, tuple[bytes, bytes]] = {}
        self._answer: tuple[int, set[str], set[tuple[bytes, bytes]]] | None = None

    def observe(self, to: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ShareKeys):
            self.keys[to] = (msg.a, msg.b)
        elif isinstance(msg, m.InputShare):
            self._share(to, msg)
        return msg

    def _share(self, to: str, msg: m.InputShare) -> None:
        answer = self._answer
        if answer is None or answer[0] != msg.round_no or to in answer[1]:  # a new answer
            answer = self._answer = (msg.round_no, set(), set())
        answer[1].add(to)
        for i, comp in enumerate((msg.a, msg.b)):
            if isinstance(comp, Seed):
                used = (comp.key, bytes(12))
            elif isinstance(comp, Keyed):
                used = (self.keys[to][i], round_nonce(msg.round_no))
            else:
                continue
            if used not in answer[2]:
                answer[2].add(used)
                digest = hashlib.sha256(b"asyncmpc mask trace" + used[0]).hexdigest()[:32]
                with open(self.path, "a") as fh:
                    fh.write(f"{self.name} {digest} {used[1].hex()}\n")


class Tampered:
    """A ``Node`` whose outgoing messages pass through ``alter`` first (a ``Transport``)."""

    def __init__(self, node: Node, alter: Alter) -> None:
        self._node, self._alter = node, alter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    async def send(self, to: str, msg: m.Message) -> None:
        changed = self._alter(to, msg)
        if changed is not None:
            await self._node.send(to, changed)

    def post(self, to: str, msg: m.Message, timeout: float | None) -> None:
        changed = self._alter(to, msg)
        if changed is not None:
            self._node.post(to, changed, timeout)


def tampering_opener(alter: Alter) -> Callable[..., contextlib.AbstractAsyncContextManager[Any]]:
    """An ``Opener`` for a player whose every message, greetings too, passes through ``alter``."""

    @contextlib.asynccontextmanager
    async def opener(config: Config, name: str, *, greet: Greeting | None = None) -> AsyncIterator[Any]:
        def greeting(peer: str) -> list[m.Message]:
            sent = [alter(peer, msg) for msg in (greet(peer) if greet is not None else [])]
            return [msg for msg in sent if msg is not None]

        async with Node(config, name, greet=greeting) as node:
            yield Tampered(node, alter)

    return opener


def chain(*alters: Alter) -> Alter:
    """Apply ``alters`` in order (a None from one sends nothing)."""

    def alter(to: str, msg: m.Message) -> m.Message | None:
        out: m.Message | None = msg
        for step in alters:
            if out is None:
                return None
            out = step(to, out)
        return out

    return alter


__all__ = ["Liar", "MaskTrace", "Tampered", "chain", "equivocate", "tampering_opener", "withhold"]


def lie_in_norm_values() -> None:
    """Patch this process's compute server to open false values (plus one) on the first
    component it holds of every owner's norm-checked input, and sign them as its own: the
    other holder of that component can prove the lie (``protocol.normcourt``)."""
    from asyncmpc.crypto import goldilocks as gf
    from asyncmpc.crypto.normproof import Opened
    from asyncmpc.protocol import servernorm

    honest = servernorm.open_components

    def lying(*args: Any, **kwargs: Any) -> list[Opened]:
        out = honest(*args, **kwargs)
        first = out[0]
        false = gf.add(first.values, np.ones(first.values.shape, dtype=np.uint64))
        return [dataclasses.replace(first, values=false), *out[1:]]

    servernorm.open_components = lying  # type: ignore[assignment]
