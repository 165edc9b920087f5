"""A stateful property test of one round with one arbitrary malicious server (hypothesis).

The three servers and the model owner's round are the real state machines; the network is a
queue the test delivers from in any order across connections, in order on each (TCP keeps it).
One server, chosen by hypothesis, is malicious: any message it sends may be altered (vectors,
tags, field sums, contributor and owner lists, a refusal of any code in its place), dropped,
duplicated, or sent early or late, and it may drop what it is sent or take it in any order.
Honest players' messages are all delivered; a deadline fires only when no honest message is
still on its way (an honest server answers within its deadline). After every step:

- a sum the model owner accepts is the true sum over its contributors, bit for bit, and has at
  least ``min_owners`` of them;
- no honest server is named a cheater.

Rounds on three servers, ordinary or MAC, and MAC rounds on two (SECURITY.md, claims 1, 4, 5).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from asyncmpc.config import Config, parse_config
from asyncmpc.crypto.field import P
from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.ring import encode
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol import AggregationRound, Send, ServerProtocol
from asyncmpc.protocol.authenticated import MAC_HEADROOM, authenticated_shares
from asyncmpc.protocol.events import Drop
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.shares import contribution_shares
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message
from tests.helpers import hosts_toml

pytestmark = pytest.mark.adversarial

CFG: Config = parse_config(hosts_toml(4, ports=[9000, 9001, 9002, 9003], protocol="min_owners = 3"), "test.toml")
PARAMS = Params.of(CFG)
MO = "model-owner"
SERVERS = tuple(p.name for p in CFG.servers)
OWNERS = tuple(p.name for p in CFG.data_owners)
SHAPE = (6,)
Envelope = tuple[str, Send]

ALTERATIONS = ("vector", "second", "tag", "field", "fewer", "more", "empty", "digest", "refuse")


def alter(msg: m.Message, how: str, code: m.Refusal) -> m.Message:
    """What a malicious server sends instead of ``msg``."""
    if how == "refuse":
        return m.Reject(session=msg.session, round_no=msg.round_no, reason="no", code=code)
    if isinstance(msg, m.ResultShare):
        if how == "vector":
            return dataclasses.replace(msg, a=_plus_one(msg.a))
        if how == "second" and msg.b is not None:
            return dataclasses.replace(msg, b=_plus_one(msg.b))
        if how == "tag" and msg.b_tag:
            return dataclasses.replace(msg, b_tag=bytes([msg.b_tag[0] ^ 1]) + msg.b_tag[1:])
        if how == "field" and msg.ma is not None:
            return dataclasses.replace(msg, ma=np.array([(int(msg.ma[0]) + 1) % P], dtype=np.int64))
        if how == "fewer" and msg.contributors:
            return dataclasses.replace(msg, contributors=msg.contributors[1:])
        if how == "more":
            return dataclasses.replace(msg, contributors=OWNERS)
    if isinstance(msg, (m.Holding, m.InputsHeld)):
        owners = {"fewer": msg.owners[1:], "more": OWNERS, "empty": ()}.get(how)
        if owners is not None:
            digests = getattr(msg, "digests", ())
            keep = {"fewer": digests[1:], "more": digests, "empty": ()}[how]
            if isinstance(msg, m.Holding):
                return dataclasses.replace(msg, owners=owners, digests=keep)
            return dataclasses.replace(msg, owners=owners)
        if how == "digest" and isinstance(msg, m.Holding) and msg.digests:
            return dataclasses.replace(msg, digests=(bytes(len(msg.digests[0])), *msg.digests[1:]))
    return msg


def _plus_one(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[0] += 1
    return out


class OneMaliciousServer(RuleBasedStateMachine):
    @initialize(
        liar=st.sampled_from(SERVERS),
        kind=st.sampled_from(["ordinary", "mac", "mac on two"]),
        seed=st.integers(0, 2**32 - 1),
    )
    def start(self, liar: str, kind: str, seed: int) -> None:
        self.liar = liar
        rng = np.random.default_rng(seed)
        self.xs = {o: rng.normal(size=SHAPE) for o in OWNERS}
        self.key = None if kind == "ordinary" else MacKey.new()
        live = SERVERS if kind != "mac on two" else tuple(s for s in SERVERS if s != _honest_other(liar))
        self.servers = {s: ServerProtocol(PARAMS, s) for s in live}
        self.rnd = AggregationRound(PARAMS, 1, OWNERS, SHAPE, servers=live, mac_key=self.key)
        self.queue: list[Envelope] = [(MO, a) for a in self.rnd.open()]
        for owner, x in self.xs.items():
            sharer = InputSharer()
            if self.key is None:
                sends = contribution_shares(PARAMS, 1, x, sharer)
            else:
                sends = authenticated_shares(PARAMS, 1, x, sharer, self.key)
            self.queue += [(owner, s) for s in sends if s.to in live]

    # ------------------------------------------------------------ the network

    def _post(self, sender: str, actions: list[Send | Drop]) -> None:
        self.queue += [(sender, a) for a in actions if isinstance(a, Send)]

    def _deliver(self, sender: str, action: Send) -> None:
        msg = decode_message(memoryview(bytearray(encode_message(action.msg))))
        if action.to in self.servers:
            try:
                self._post(action.to, self.servers[action.to].feed(sender, msg))
            except RemoteProtocolError as exc:
                assert exc.peer == self.liar or sender == self.liar, f"an honest message was refused: {exc}"
        elif action.to == MO:
            try:
                self._post(MO, self.rnd.feed(sender, msg))
            except RemoteProtocolError:
                assert sender == self.liar, "the model owner refused an honest server"
                self._post(MO, self.rnd.lose(sender, f"{sender} broke the protocol"))

    def _next(self) -> list[int]:
        """The messages that may arrive next: the first on each honest connection, any to or
        from the liar."""
        seen: set[tuple[str, str]] = set()
        out = []
        for i, (sender, action) in enumerate(self.queue):
            channel = (sender, action.to)
            if self.liar in channel or channel not in seen:
                out.append(i)
            seen.add(channel)
        return out

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """Deliver a message that may arrive next (so messages arrive early, late, in any order)."""
        sender, action = self.queue.pop(data.draw(st.sampled_from(self._next())))
        self._deliver(sender, action)

    @precondition(lambda self: self._from_liar())
    @rule(data=st.data(), how=st.sampled_from(ALTERATIONS), code=st.sampled_from(list(m.Refusal)))
    def tamper(self, data: st.DataObject, how: str, code: m.Refusal) -> None:
        """The liar alters one of its messages and sends it now."""
        i = data.draw(st.sampled_from(self._from_liar()))
        sender, action = self.queue.pop(i)
        changed = alter(action.msg, how, code)
        event(f"altered {action.msg.KIND}" if changed is not action.msg else "not altered")
        self._deliver(sender, dataclasses.replace(action, msg=changed))

    @precondition(lambda self: self._from_liar())
    @rule(data=st.data(), twice=st.booleans())
    def drop_or_duplicate(self, data: st.DataObject, twice: bool) -> None:
        """The liar drops one of its messages, or sends it twice."""
        i = data.draw(st.sampled_from(self._from_liar()))
        if twice:
            self._deliver(*self.queue[i])
        else:
            self.queue.pop(i)

    @precondition(lambda self: self._to_liar())
    @rule(data=st.data())
    def ignore(self, data: st.DataObject) -> None:
        """The liar ignores a message it is sent."""
        self.queue.pop(data.draw(st.sampled_from(self._to_liar())))

    @precondition(lambda self: not self.rnd.done and not self._honest_pending())
    @rule()
    def deadline(self) -> None:
        """A deadline passes: honest servers have answered everything they were asked."""
        self._post(MO, self.rnd.expire())

    @precondition(lambda self: self.queue)
    @rule(
        seed=st.integers(0, 2**32 - 1),
        how=st.sampled_from([*ALTERATIONS, "honest"]),
        code=st.sampled_from(list(m.Refusal)),
        odds=st.sampled_from([0.0, 0.3, 1.0]),
    )
    def flush(self, seed: int, how: str, code: m.Refusal, odds: float) -> None:
        """Deliver everything queued, and what it leads to, in a random order; the liar alters
        its messages as ``how`` says, drops or duplicates each with probability ``odds``."""
        rng = random.Random(seed)
        while self.queue:
            sender, action = self.queue.pop(rng.choice(self._next()))
            if sender == self.liar and how != "honest":
                fate = rng.random()
                if fate < odds / 2:
                    continue  # dropped
                action = dataclasses.replace(action, msg=alter(action.msg, how, code))
                if fate < odds:
                    self._deliver(sender, action)  # and once more below
            self._deliver(sender, action)

    @rule()
    def idle(self) -> None:
        """The servers have nothing to read (they expand streams ahead)."""
        for server in self.servers.values():
            server.idle()

    def _from_liar(self) -> list[int]:
        return [i for i, (sender, _) in enumerate(self.queue) if sender == self.liar]

    def _to_liar(self) -> list[int]:
        return [i for i, (_, action) in enumerate(self.queue) if action.to == self.liar]

    def _honest_pending(self) -> bool:
        return any(sender != self.liar for sender, _ in self.queue)

    # ------------------------------------------------------------ the guarantee

    @invariant()
    def accepted_sums_are_true_sums(self) -> None:
        result = getattr(self, "rnd", None) and self.rnd.result
        if not result:
            return
        assert result.cheater in ("", self.liar), f"an honest server was named: {result.cheater}"
        event("no sum" if result.total is None else ("a sum, liar excluded" if result.cheater else "a sum"))
        if result.total is None:
            return
        assert len(result.contributors) >= CFG.protocol.min_owners
        p = CFG.protocol
        terms = p.max_owners * (MAC_HEADROOM if self.key is not None else 1)
        expected = sum(encode(self.xs[o], p.frac_bits, max_terms=terms) for o in result.contributors)
        np.testing.assert_array_equal(result.total, expected)


def _honest_other(liar: str) -> str:
    """The server left out of a two-server round: not the liar (it is one of the two)."""
    return next(s for s in reversed(SERVERS) if s != liar)


OneMaliciousServer.TestCase.settings = settings(
    max_examples=300, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_one_malicious_server = OneMaliciousServer.TestCase
