"""The model owner's side of one secure-aggregation round (sans-I/O).

``AggregationRound`` opens the round at the servers, takes their early answers (or their
``Holding`` reports), fixes the contributor set S (owners held by every server that reported),
asks for the sum over S when it must, and reconstructs it from the servers' ``ResultShare``s
after cross-checking the twice-held components (and, in a MAC round, the MAC). Its deadlines
are its own (``get_timer`` / ``handle_timer``, see ``protocol.deadlines``); the runtime calls
``lose`` when a server's connection closes and ``withdraw`` when an owner's does. An ordinary
round that ends on two servers yields nothing (``Kind.RECHECK``: two servers' sums are checked
only in a MAC round), except under [privacy]. What a round came to is ``protocol.outcome``;
what a data owner sends, ``protocol.shares``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.prf import MAC_KEY_BYTES, RandomBytes
from asyncmpc.crypto.rss import RShare, reconstruct, suspects
from asyncmpc.crypto.signing import NONCE_BYTES
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.answers import CrossCheck, Digests, check_answer
from asyncmpc.protocol.contributors import Reports
from asyncmpc.protocol.deadlines import Due, RoundClock
from asyncmpc.protocol.dispute import full_verdict, tagged_mac_ok
from asyncmpc.protocol.events import Action, Drop, Send, check_sender
from asyncmpc.protocol.normcourt import NormCourt
from asyncmpc.protocol.outcome import Kind, RoundResult
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m
from asyncmpc.wire.messages import Refusal

__all__ = ["AggregationRound", "Kind", "Phase", "RoundResult"]

_ENDS_ROUND = frozenset({Refusal.TOO_FEW, Refusal.MIXED, Refusal.RERUN, Refusal.BUDGET, Refusal.NO_MAC})
"""Refusals that end a round without a sum and without a suspect (see ``_refused``)."""
_RELEASE_RULES = frozenset({Refusal.TOO_FEW, Refusal.MIXED, Refusal.RERUN})
"""Refusals by the release rules: every honest server decides them alike."""
Floats = NDArray[np.float64]


class Phase(enum.Enum):
    """Where a round is (``AggregationRound.phase``); every change is made by ``_enter``."""

    OPEN = "open"
    """Opened: servers answer early, or report ``Holding``, as their inputs complete."""
    CLOSED = "closed"
    """Inputs closed (a deadline): the servers still awaited report what they hold."""
    ASKED = "asked"
    """The contributors are fixed and the sum asked for (``Aggregate``): results are awaited."""
    DONE = "done"
    """``result`` is set."""


_MOVES = {
    Phase.OPEN: {Phase.CLOSED, Phase.ASKED, Phase.DONE},
    Phase.CLOSED: {Phase.ASKED, Phase.DONE},
    Phase.ASKED: {Phase.ASKED, Phase.DONE},
    Phase.DONE: set(),
}
"""The transitions a round may make (asking again, in full, is ASKED -> ASKED)."""


class AggregationRound:
    """The model owner's state machine for round ``round_no``, on the servers in ``servers``
    (default: all three; two when one is down).

    The normal flow: ``open`` -> every server answers at once with an early ``ResultShare``
    (or ``Holding`` when owners are missing) -> ``Aggregate`` if needed -> ``ResultShare`` ->
    ``result``. Exceptional flows enter at one point each: ``withdraw`` (an owner is gone),
    ``handle_timer`` (a deadline passed: ``expire`` or ``lose``), ``lose`` (a server's
    connection closed, it stayed silent past its deadline, or it refused): the round goes on
    with the servers left, asking them for both components in full, and yields nothing only
    when fewer than two remain or its time is over.
    """

    def __init__(
        self,
        params: Params,
        round_no: int,
        owners: tuple[str, ...],
        shape: tuple[int, ...],
        random_bytes: RandomBytes = os.urandom,
        servers: tuple[str, ...] | None = None,
        mac_key: MacKey | None = None,
        position: int = 0,
        norm: bool = False,
        court: NormCourt | None = None,
    ) -> None:
        if round_no < 1:
            raise ValueError("rounds are numbered from 1")
        self.params = params
        self.round_no = round_no
        self.owners = tuple(owners)
        """The owners the round still waits for."""
        self._order = self.owners
        self._invited = frozenset(owners)
        self.shape = tuple(shape)
        self.servers = params.servers
        """Every server of the deployment, in index order."""
        self.live = tuple(s for s in self.servers if servers is None or s in servers)
        """The servers the round still counts on."""
        if len(self.live) < 2:
            raise ValueError(f"a round needs two servers, got {self.live}")
        self._reports = Reports()
        self._holding = self._reports.holding
        self.mac_key = mac_key
        """The MAC key of a MAC round (None: an ordinary round)."""
        self.mac = mac_key is not None
        self._digests = Digests(self.servers)
        self._results: dict[str, m.ResultShare] = {}
        self._keys: dict[str, bytes] = {}
        self._open_keys: dict[str, bytes] = {}
        self._early: dict[str, m.ResultShare] = {}
        self._full = len(self.live) < 3
        self._random_bytes = random_bytes
        self._asked: tuple[str, ...] = ()
        """The servers the current ask went to (in ``Phase.ASKED``)."""
        self.contributors: tuple[str, ...] = ()
        self.phase = Phase.OPEN
        self._result: RoundResult | None = None
        self.norm = norm
        """A norm-checked round: shares in F_q; owners the servers find over the bound are left out."""
        self.nonce = random_bytes(NONCE_BYTES) if norm else b""
        """A norm-checked round's nonce (``OpenRound.norm``, ``ModelUpdate.norm``)."""
        self.court = court
        """Where a server's proof that another lied in a norm check goes (``protocol.normcourt``)."""
        self._norm_failed: dict[str, set[str]] = {}
        """Owner -> the servers that reported its input over the norm bound."""
        self._inputs_in: set[str] = set()
        """Servers that have every owner's share and wait only for peers' norm values."""
        self._check = CrossCheck(self.servers, field=norm)
        self._stale: dict[str, int] = {}
        """Server -> answers still due to asks that a later ask replaced (ignored when they come)."""
        self.asks = 0
        """How often the round asked for its sum (each ``Aggregate`` starts a new ask)."""
        self._clock = RoundClock(params.round_timeout, params.server_timeout)
        self.position = position
        """Under [privacy] mechanism "tree": the round's position (from 1; 0: none)."""

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def players(self) -> tuple[str, ...]:
        """The players whose messages the round takes: the servers."""
        return self.servers

    @property
    def result(self) -> RoundResult | None:
        return self._result

    @result.setter
    def result(self, result: RoundResult) -> None:
        self._enter(Phase.DONE)
        self._result = dataclasses.replace(result, norm_failed=self.norm_failed) if self.norm else result

    def _enter(self, phase: Phase) -> None:
        if phase not in _MOVES[self.phase]:
            raise AssertionError(f"round {self.round_no}: {self.phase.value} -> {phase.value} is not a transition")
        self.phase = phase

    @property
    def minimum(self) -> int:
        """The fewest contributors a sum may have (every honest server keeps it too)."""
        return max(2, self.params.min_owners)

    @property
    def waiting_on(self) -> tuple[str, ...]:
        """Live servers whose answer the current phase still waits for."""
        if self.phase is Phase.ASKED:
            return tuple(s for s in self._asked if s not in self._results)
        return tuple(s for s in self.live if s not in self._holding)

    @property
    def may_close_inputs(self) -> bool:
        """No sum was asked for yet and inputs are still open: ``expire`` would close them."""
        return self.phase is Phase.OPEN

    @property
    def answered(self) -> int:
        """How many servers answered in the current phase."""
        if self.phase is Phase.ASKED:
            return len(self._results)
        return len(set(self._holding) | (self._inputs_in & set(self.live)))

    # ------------------------------------------------------------ the normal flow

    def open(self, now: float = 0.0) -> list[Send]:
        """``OpenRound`` for each live server: with three, each with its own one-time MAC key
        for an early result; with two, asking for early results in full. The round's time runs
        from ``now`` (the caller's clock)."""
        self._clock.opened = now
        if self.court is not None and self.norm:
            self.court.opened(self.round_no, self.nonce, math.prod(self.shape))
        out = []
        for s in self.live:
            self._open_keys[s] = b"" if self._full else self._random_bytes(MAC_KEY_BYTES)
            msg = m.OpenRound(
                session=self.params.session,
                round_no=self.round_no,
                owners=self.owners,
                shape=self.shape,
                mac_key=self._open_keys[s],
                full=self._full,
                mac=self.mac,
                servers=self.live,
                norm=self.nonce,
                position=self.position,
            )
            out.append(Send(s, msg))
        return out

    def feed(self, sender: str, msg: m.Message) -> list[Send]:
        """Handle a server's message for this round. Raises RemoteProtocolError."""
        check_sender(sender, self.params.role(sender), msg, self.params.session)
        if isinstance(msg, m.NormEvidence):  # for this round or a recent one: the court keeps them
            if self.court is not None:
                self.court.hear(sender, msg)
            return []
        if msg.round_no < self.round_no:
            return []  # late: an answer to a round that ended without waiting for it
        if msg.round_no != self.round_no:
            raise RemoteProtocolError(f"{msg.KIND!r} for round {msg.round_no}, expected {self.round_no}", peer=sender)
        if self.done or sender not in self.live:
            return []
        if isinstance(msg, m.Holding):
            return self._on_holding(sender, msg)
        if isinstance(msg, m.ResultShare):
            return self._on_result(sender, msg)
        if isinstance(msg, m.Reject):
            return self._refused(sender, msg.code, msg.reason)
        if isinstance(msg, m.NormVerdict) and self.norm:
            return self._on_norm_verdict(sender, msg)
        raise RemoteProtocolError(f"unexpected {msg.KIND!r} during a round", peer=sender)

    def _on_norm_verdict(self, sender: str, msg: m.NormVerdict) -> list[Send]:
        """A server left owners out as over the bound (the round stops waiting for them here; they
        are named once two servers say so), or its norm reports differ from another server's (a
        dispute: the round yields nothing)."""
        unknown = set(msg.failed) - self._invited
        if unknown:
            raise RemoteProtocolError(f"names owners outside round {self.round_no}: {sorted(unknown)}", peer=sender)
        if msg.suspects:
            why = f"{sender}'s norm check disagrees with {', '.join(msg.suspects)}"
            return self._disputed(why, tuple(s for s in msg.suspects if s in self.servers))
        if msg.waiting:
            self._inputs_in.add(sender)
        for owner in msg.failed:
            self._norm_failed.setdefault(owner, set()).add(sender)
        self.owners = tuple(o for o in self.owners if o not in msg.failed)
        return []

    @property
    def norm_failed(self) -> tuple[str, ...]:
        """The owners at least two servers found over the norm bound (left out of the sum)."""
        return tuple(o for o in self._order if len(self._norm_failed.get(o, ())) >= 2)

    def _on_holding(self, sender: str, msg: m.Holding) -> list[Send]:
        if self.phase is Phase.ASKED or sender in self._holding:
            return []
        unknown = set(msg.owners) - self._invited
        if unknown:
            raise RemoteProtocolError(f"reports owners outside round {self.round_no}: {sorted(unknown)}", peer=sender)
        if self.mac:
            self._digests.report(sender, msg.owners, msg.digests)
        self._holding[sender] = frozenset(msg.owners)
        return self._decide() if not self.waiting_on else []

    def _on_early_result(self, sender: str, msg: m.ResultShare) -> list[Send]:
        """A server had every owner's share and answered at once (under its OpenRound key)."""
        if sender in self._holding or not set(self.owners) <= set(msg.contributors) <= self._invited:
            raise RemoteProtocolError(f"unrequested result share for round {self.round_no}", peer=sender)
        if len(msg.contributors) < self.minimum:
            raise RemoteProtocolError(
                f"result share over {len(msg.contributors)} owner(s) in round {self.round_no}", peer=sender
            )
        check_answer(sender, msg, self.shape, mac=self.mac, full=self._full)
        self._holding[sender] = frozenset(msg.contributors)
        if self.mac:
            self._digests.report(sender, msg.contributors, msg.digests)
        self._early[sender] = msg
        if not self._full:
            self._check.absorb(self._early, self._open_keys)
        agree = len({frozenset(r.contributors) for r in self._early.values()}) == 1
        usable = self._full or len(self.live) == 3  # tags need all three; a lost server needs full answers
        if len(self._early) == len(self.live) and agree and usable:  # the common case: no Aggregate
            self.contributors = tuple(o for o in self._order if o in msg.contributors)
            self._enter(Phase.ASKED)
            self._asked = self.live
            self._keys = dict(self._open_keys)
            self._results = dict(self._early)
            return self._finish()
        return self._decide() if not self.waiting_on else []  # someone holds fewer: ask again

    def _decide(self) -> list[Send]:
        """Fix the contributor set (owners every answering server holds) and ask for its sum:
        tagged from three servers, in full from two."""
        self._check = CrossCheck(self.servers, field=self.norm)  # early results do not count
        for s in self._asked:  # an answer to the last ask may still come: it is not for this one
            if s not in self._results:
                self._stale[s] = self._stale.get(s, 0) + 1
        self._results = {}
        self.asks += 1
        asked, held = self._reports.choose(self.live, self._base, mac=self.mac)
        odd = None if self.mac else self._reports.odd_one_out(asked, held, self._base)
        if odd is not None:
            return self._dispute(odd, asked)
        self.contributors = tuple(o for o in self._order if o in held)
        if self.mac:  # an owner whose holders report different shares stays in: see mismatches
            self._digests.compare(asked, self.contributors)
        if len(self.contributors) < self.minimum:
            return self._fail(f"{len(self.contributors)} contributor(s), fewer than the minimum of {self.minimum}")
        if len(asked) < 2:
            return self._fail(f"only {len(asked)} server(s) reported their inputs")
        self._enter(Phase.ASKED)
        self._asked = asked
        self._full = len(asked) < 3 or self.mac
        out = []
        for s in asked:
            self._keys[s] = b"" if self._full else self._random_bytes(MAC_KEY_BYTES)
            msg = m.Aggregate(
                session=self.params.session,
                round_no=self.round_no,
                contributors=self.contributors,
                mac_key=self._keys[s],
                full=self._full,
            )
            out.append(Send(s, msg))
        return out

    @property
    def _base(self) -> frozenset[str]:
        """The owners the round may still sum: an owner withdrawn after its share arrived
        everywhere still counts; once asked, the servers may have left the others out."""
        return self._invited & set(self.contributors) if self.contributors else self._invited

    def _dispute(self, odd: str, asked: tuple[str, ...]) -> list[Send]:
        both = self._reports.held_by((s for s in asked if s != odd), self._base)
        missing = ", ".join(sorted(both - self._holding[odd]))
        why = f"{odd} reports fewer owners than the other servers hold ({missing} not reported by {odd})"
        self.contributors = tuple(o for o in self._order if o in both)
        return self._disputed(why, (odd,))

    def _disputed(self, why: str, suspects: tuple[str, ...], servers: tuple[str, ...] = ()) -> list[Send]:
        """The round yields nothing; one of ``suspects`` lied (or an owner sent two servers
        different shares): it is to run again as a MAC round."""
        self.result = RoundResult(self.round_no, None, self.contributors, False, why, servers, suspects=suspects)
        return []

    def _refused(self, sender: str, code: Refusal, reason: str) -> list[Send]:
        """A server refused; its code says what that means (``Refusal``). The release rules (too few
        contributors, mixed requests, inputs released before over another set) and a spent [privacy]
        budget end the round without a sum, and blame no one: every honest server keeps them. But a
        server that refuses by a release rule what another server released is the odd one out (it
        lies, or an owner sent it other shares): an ordinary round is disputed with it the suspect,
        a MAC round goes on without it. A server that does not have the round (it restarted) is out
        of it, as is any server that refuses before an ask. Once the sum was asked for, an ordinary
        round ends as a dispute, to run again as a MAC round (which two servers can complete): the
        refusal may come from a server that cannot leave out an owner whose vector it summed,
        because another server denied holding that owner, truly or not, and going on with the two
        others would trust that one unchecked."""
        if self.phase is Phase.ASKED and self._stale.get(sender):
            self._stale[sender] -= 1  # it refused an ask that a later one replaced
            return []
        released = [s for s in (*self._early, *self._results) if s != sender]
        if code in _RELEASE_RULES and released:
            # every honest server keeps the same rules over the same shares: one that refuses
            # what another released is the odd one (or was sent other shares): not the round's end
            why = f"{sender} refused what {released[0]} released: {reason}"
            return self.lose(sender, why) if self.mac else self._disputed(why, (sender,))
        if code in _ENDS_ROUND:
            return self._fail(f"{sender} refused: {reason}", refusal=code)
        if self.phase is not Phase.ASKED or self.mac or code is Refusal.UNKNOWN_ROUND:
            return self.lose(sender, f"{sender} refused: {reason}")
        deniers, left_out = self._reports.deniers(self._asked, self.contributors)
        deniers = deniers or (sender,)
        why = f"{sender} refused: {reason}"
        if left_out:
            why += f" ({', '.join(sorted(left_out))} not reported by {', '.join(deniers)})"
        return self._disputed(why, deniers)

    def _on_result(self, sender: str, msg: m.ResultShare) -> list[Send]:
        if self.phase is not Phase.ASKED:
            return self._on_early_result(sender, msg)
        if self._stale.get(sender):
            self._stale[sender] -= 1
            return []
        if sender not in self._asked or sender in self._results:
            raise RemoteProtocolError(f"unrequested result share for round {self.round_no}", peer=sender)
        if tuple(msg.contributors) != self.contributors:
            raise RemoteProtocolError(f"result share over the wrong contributors in round {self.round_no}", peer=sender)
        check_answer(sender, msg, self.shape, mac=self.mac, full=self._full)
        self._results[sender] = msg
        if self.mac:
            self._digests.report(sender, msg.contributors, msg.digests)
        if not self._full:
            self._check.absorb(self._results, self._keys)
        if len(self._results) == len(self._asked):
            return self._finish()
        return []

    def _finish(self) -> list[Send]:
        servers = tuple(s for s in self.servers if s in self._results)
        if self.mac and self._full:
            return self._verdict()
        if self.mac:
            return self._mac_checked(servers)
        if self._full and not self.params.private:
            why = f"only {', '.join(servers)} answered: a sum from two servers is checked only in a MAC round"
            self.result = RoundResult(self.round_no, None, self.contributors, False, why, servers, recheck=True)
            return []
        if self._full:
            shares = [RShare(self.servers.index(s), r.a, r.b) for s, r in self._results.items() if r.b is not None]
            total = reconstruct(shares, field=self.norm)
            self.result = RoundResult(self.round_no, total, self.contributors, False, servers=servers)
            return []
        self._check.absorb(self._results, self._keys)
        if self._check.failed:
            names = tuple(self.servers[i] for i in suspects(self._check.failed))
            reason = f"result shares disagree; suspect server(s) {', '.join(names)}"
            return self._disputed(reason, names, servers)
        assert self._check.total is not None and self._check.complete
        self.result = RoundResult(self.round_no, self._check.total, self.contributors, True, servers=servers)
        return []

    def _mac_checked(self, servers: tuple[str, ...]) -> list[Send]:
        """A MAC round's tagged answers from three servers: accepted when the tags, the field
        sums and the MAC all check; otherwise every server is asked for the same sums in full,
        which ``_verdict`` resolves."""
        self._check.absorb(self._results, self._keys)
        total = self._check.total
        assert total is not None and self.mac_key is not None
        if not self._check.failed and tagged_mac_ok(total, [self._results[s] for s in self.servers], self.mac_key):
            self.result = RoundResult(self.round_no, total, self.contributors, True, servers=servers, mac=True)
            return []
        return self._decide()  # in full, over the same contributors (release rule 2 allows it)

    def _verdict(self) -> list[Send]:
        """A MAC round's answers, all in full: the verified sum, and the cheater if one lied."""
        assert self.mac_key is not None
        self.result = full_verdict(
            self.round_no, self._results, self.servers, self.mac_key, self._digests, self.contributors, self.norm
        )
        return []

    # ------------------------------------------------------------ deadlines

    def get_timer(self, now: float) -> float | None:
        """When ``handle_timer`` is due next, on the caller's clock (None once the round is
        done). Ask again after every event: a silence counts from the first call that sees it."""
        return None if self.done else self._due(now)[0]

    def handle_timer(self, now: float) -> Sequence[Action]:
        """Act on a deadline that passed by ``now``: close inputs, leave silent servers out
        (and disconnect them), or end the round without a result."""
        if self.done:
            return []
        at, due = self._due(now)
        if now < at:
            return []
        limit = self.params
        if due is Due.OVER:
            waiting = f" (waiting on {', '.join(self.waiting_on)})" if self.waiting_on else ""
            return self._fail(f"the round did not finish within 1.5 x round_timeout{waiting}")
        if due is Due.CLOSE_INPUTS or self.may_close_inputs:
            return self.expire()
        out: list[Action] = []
        late = due is Due.LATE
        self._clock.late = self._clock.late or late
        for s in self.waiting_on:
            if late:
                why = f"did not answer within round_timeout = {limit.round_timeout:g}s"
            else:
                why = f"silent for {limit.server_timeout:g}s after the others answered ([protocol] server_timeout)"
                out.append(Drop(s, RemoteProtocolError(why, peer=s)))
            out.extend(self.lose(s, f"{s} {why}" if late else f"{s} was {why}"))
            if self.done:
                break
        return out

    def _due(self, now: float) -> tuple[float, Due]:
        silence = (self.asks, self.phase) if self.answered >= 2 and self.waiting_on else None
        return self._clock.next(now, inputs_open=self.may_close_inputs, silence=silence)

    # ------------------------------------------------------------ exceptional flows

    def withdraw(self, owner: str) -> list[Send]:
        """``owner`` declined the round or its connection closed: servers stop waiting for it
        (before inputs close). A server that already holds its share keeps it; the round sums
        it if every server does, and leaves it out otherwise."""
        if self.phase not in (Phase.OPEN, Phase.CLOSED) or owner not in self.owners:
            return []
        self.owners = tuple(o for o in self.owners if o != owner)
        msg = m.Withdraw(session=self.params.session, round_no=self.round_no, owners=(owner,))
        return [Send(s, msg) for s in self.live if s not in self._holding]

    def lose(self, server: str, reason: str = "") -> list[Send]:
        """``server`` is out of this round (its connection closed, it stayed silent past its
        deadline, or it refused): go on with the others, in full, if two remain."""
        if self.done or server not in self.live:
            return []
        self.live = tuple(s for s in self.live if s != server)
        self._holding.pop(server, None)
        self._early.pop(server, None)
        why = reason or f"{server} was lost"
        if len(self.live) < 2:
            return self._fail(f"{why}; fewer than two servers left")
        if self.phase is Phase.ASKED and server not in self._asked:
            return []
        if self.waiting_on and self.phase is not Phase.ASKED:
            return []  # the others have not all reported yet; _on_holding decides
        return self._decide()  # in full from the two left (their early or tagged answers cannot be used)

    def expire(self) -> list[Send]:
        """Close inputs at the servers that have not reported (or, once closed, go on with the
        servers that answered)."""
        if self.done:
            return []
        if self.may_close_inputs:
            self._enter(Phase.CLOSED)
            msg = m.CloseInputs(session=self.params.session, round_no=self.round_no)
            return [Send(s, msg) for s in self.waiting_on]
        out: list[Send] = []
        for s in self.waiting_on:
            out += self.lose(s, f"{s} did not answer in time")
            if self.done:
                break
        return out

    def _fail(self, reason: str, refusal: Refusal | None = None) -> list[Send]:
        self.result = RoundResult(
            self.round_no,
            None,
            self.contributors,
            False,
            reason,
            mac=self.mac,
            inconsistent=self._digests.inconsistent,
            refusal=refusal,
        )
        return []
