"""A compute server's part in norm-checked rounds (``[protocol] norm_bound``; sans-I/O, as
``protocol.server``, whose ``ServerProtocol`` takes these methods).

The normal flow: a share arrives (``_norm_input``): its components are checked against the
owner's signed digests and opened, the values go to the round's other servers
(``NormOpened``), and the share waits in ``RunningSums.pending``; each peer's values
(``_norm_opened``) go to the round's ``NormChecks`` (``protocol.normcheck``), which decides
the owner once every round server reported: admitted into the sum, left out and named
(``NormVerdict.failed``), or a dispute (``NormVerdict.suspects``).

The exceptional flow, a share that did not reach every server: once every owner's share is
here and verdicts wait only for peers, the model owner is told (``NormVerdict.waiting``, so
the silent server is told to close in ``server_timeout``), and when inputs close the reports
in decide an owner if they cover all three components (``_norm_close``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from asyncmpc.config import Role
from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.normproof import Component, context_of, open_components, seeded
from asyncmpc.crypto.ring import RingArray
from asyncmpc.crypto.rss import Seed
from asyncmpc.crypto.signing import Signer, statement, verify
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.authenticated import RingPart
from asyncmpc.protocol.events import Action, Send
from asyncmpc.protocol.normcheck import NormChecks, Outcome, Report
from asyncmpc.protocol.normcourt import opened_digest
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.sums import RunningSums
from asyncmpc.wire import messages as m

__all__ = ["NormServer"]

_OPENED_FIELDS = ("session", "round_no", "owner", "digests", "a", "b", "signature", "input_id", "server_signature")
"""A ``NormOpened``'s fields, as ``NormEvidence`` carries them."""


class NormServer:
    """The norm-checked rounds' handlers of ``ServerProtocol`` (which provides what is declared
    here without a body)."""

    params: Params
    name: str
    index: int
    model_owner: str
    keys: Mapping[str, bytes]
    signer: Signer | None
    _rounds: dict[int, RunningSums]

    def _hold_ahead(self, sender: str, msg: m.Message) -> list[Action]:
        raise NotImplementedError

    def _add(
        self, sender: str, msg: m.InputShare, round_no: int, rnd: RunningSums, parts: tuple[RingPart, RingPart]
    ) -> None:
        raise NotImplementedError

    def _complete(self, round_no: int, rnd: RunningSums) -> list[Action]:
        raise NotImplementedError

    def _norm_input(self, sender: str, msg: m.InputShare, round_no: int, rnd: RunningSums) -> list[Action]:
        """A share in a norm-checked round: its components checked against the owner's digests,
        the opened values sent to the round's other servers; it waits for the verdict."""
        assert rnd.norm is not None
        a, b = _field_part(msg.a, rnd.shape), _field_part(msg.b, rnd.shape)
        if msg.norm_a is None or msg.norm_b is None or a is None or b is None:
            why = f"round {round_no} is norm-checked: the share must carry both components and their norm parts"
            raise RemoteProtocolError(why, peer=sender)
        if a.shape != rnd.shape or b.shape != rnd.shape:
            raise RemoteProtocolError(
                f"round {round_no}: a share of shape {a.shape}, expected {rnd.shape}", peer=sender
            )
        if any(_outside_field(part) for part in (a, b, msg.norm_a, msg.norm_b)):
            # a word in [q, 2^64) is no field element: the field's arithmetic would not hold on it
            raise RemoteProtocolError(f"round {round_no}: a norm share with words outside F_q", peer=sender)
        spec, i = rnd.norm.spec, self.index
        held = {
            i: Component(a.reshape(-1).view(np.uint64), msg.norm_a.view(np.uint64)),
            (i + 1) % 3: Component(b.reshape(-1).view(np.uint64), msg.norm_b.view(np.uint64)),
        }
        digests = tuple(msg.norm_digests)
        signed = self._signed(round_no, rnd.norm, sender, msg.input_id, digests, msg.norm_signature)
        if signed is False:
            raise RemoteProtocolError(
                f"round {round_no}: the signature of the norm digests does not verify", peer=sender
            )
        try:
            opened = open_components(
                spec, context_of(self.params.session, round_no, sender, msg.input_id, spec), digests, held
            )
        except ValueError as exc:
            raise RemoteProtocolError(f"round {round_no}: {exc}", peer=sender) from None
        rnd.pending[sender] = (msg, (a, b))
        values = {o.index: o.values for o in opened}
        told = m.NormOpened(
            session=self.params.session,
            round_no=round_no,
            owner=sender,
            digests=digests,
            a=values[i].view(np.int64),
            b=values[(i + 1) % 3].view(np.int64),
            signature=msg.norm_signature,
            input_id=msg.input_id,
        )
        if self.signer is not None:
            digest = opened_digest(self.params.session, rnd.norm.nonce, self.name, told)
            told = dataclasses.replace(told, server_signature=self.signer.sign(digest))
        out: list[Action] = [Send(self.params.servers[j], told) for j in sorted(rnd.servers - {i})]
        own = Report(digests, values, bool(signed), input_id=msg.input_id)
        out += self._norm_heard(round_no, rnd, sender, i, own)
        return out + self._norm_waiting(round_no, rnd)

    def _norm_waiting(self, round_no: int, rnd: RunningSums) -> list[Action]:
        """Once every owner's share is here and verdicts wait only for peers' values, tell the
        model owner (once a round): it then gives the silent server ``server_timeout``."""
        norm = rnd.norm
        if norm is None or norm.told_waiting or not rnd.pending or not rnd.inputs_open:
            return []
        if not rnd.owners <= rnd.held | set(rnd.pending):
            return []
        norm.told_waiting = True
        silent = sorted({j for o in rnd.pending for j in norm.servers if not norm.reported(o, j)})
        names = tuple(self.params.servers[j] for j in silent)
        return [Send(self.model_owner, m.NormVerdict(session=self.params.session, round_no=round_no, waiting=names))]

    def _signed(
        self,
        round_no: int,
        norm: NormChecks,
        owner: str,
        input_id: bytes,
        digests: tuple[bytes, ...],
        signature: bytes,
    ) -> bool | None:
        """Whether ``owner`` signed ``digests`` for this round (None: its key is not known, as
        in a deployment without TLS)."""
        key = self.keys.get(owner)
        if key is None:
            return None
        return verify(key, statement(self.params.session, round_no, owner, norm.nonce, input_id, digests), signature)

    def _norm_opened(self, sender: str, msg: m.NormOpened) -> list[Action]:
        """Another server's opened values on an owner's input."""
        if self.params.roles.get(msg.owner) != Role.DATA_OWNER:
            raise RemoteProtocolError(f"norm values on {msg.owner!r}, not a data owner", peer=sender)
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            return self._hold_ahead(sender, msg)
        if rnd.norm is None:
            raise RemoteProtocolError(f"norm values for round {msg.round_no}, which is not norm-checked", peer=sender)
        if msg.owner not in rnd.owners and msg.owner not in rnd.held:
            return []  # not an owner this round waits for: nothing is kept
        peer = self.params.server_index(sender)
        values = {peer: msg.a.view(np.uint64), (peer + 1) % 3: msg.b.view(np.uint64)}
        digests = tuple(msg.digests)
        signed = bool(self._signed(msg.round_no, rnd.norm, msg.owner, msg.input_id, digests, msg.signature))
        report = Report(digests, values, signed, input_id=msg.input_id, message=msg)
        return self._norm_heard(msg.round_no, rnd, msg.owner, peer, report)

    def _norm_heard(self, round_no: int, rnd: RunningSums, owner: str, server: int, report: Report) -> list[Action]:
        """A report on ``owner``'s input; once every round server's is in, the owner is decided."""
        assert rnd.norm is not None
        try:
            outcome = rnd.norm.hear(owner, server, report)
        except ValueError as exc:
            raise RemoteProtocolError(f"round {round_no}: {exc}", peer=self.params.servers[server]) from None
        return [] if outcome is None else self._norm_decided(round_no, rnd, owner, outcome)

    def _norm_decided(
        self, round_no: int, rnd: RunningSums, owner: str, outcome: Outcome, complete: bool = True
    ) -> list[Action]:
        """Admit ``owner``, leave it out (and tell the model owner), or report a dispute; with
        ``complete``, report the round's inputs once every owner is decided."""
        assert rnd.norm is not None
        session = self.params.session
        if outcome is Outcome.DISPUTE:
            names = tuple(self.params.servers[j] for j in rnd.norm.suspects)
            verdict = Send(self.model_owner, m.NormVerdict(session=session, round_no=round_no, suspects=names))
            return [*self._norm_evidence(rnd, owner), verdict]  # the proof first: the dispute ends the round
        msg, parts = rnd.pending.pop(owner)
        if owner not in rnd.owners:
            return []  # withdrawn meanwhile
        out: list[Action] = []
        if outcome is Outcome.ACCEPT:
            self._add(owner, msg, round_no, rnd, parts)
        else:
            rnd.owners = rnd.owners - {owner}
            if outcome is Outcome.REJECT:  # named: every round server's values, or a proof
                out.append(Send(self.model_owner, m.NormVerdict(session=session, round_no=round_no, failed=(owner,))))
        if complete and len(rnd.held) == len(rnd.owners) and rnd.inputs_open:
            out += self._complete(round_no, rnd)
        return out

    def _norm_evidence(self, rnd: RunningSums, owner: str) -> list[Action]:
        """For each peer this server can prove lied about ``owner`` (``NormChecks.proofs``), a
        ``NormEvidence`` for the model owner: the peer's signed message, and this server's copy
        of the component whose values differ, with its norm part (``protocol.normcourt``)."""
        assert rnd.norm is not None
        out: list[Action] = []
        share = rnd.pending.get(owner)
        for peer, component in rnd.norm.proofs:
            told = rnd.norm.message(owner, peer)
            if told is None or not told.server_signature or share is None:
                continue
            msg, (a, b) = share
            x, payload = (a, msg.norm_a) if component == self.index else (b, msg.norm_b)
            copy: dict[str, object] = {} if component is None else {"component": component, "x": x, "payload": payload}
            fields = {f: getattr(told, f) for f in _OPENED_FIELDS}
            evidence = m.NormEvidence(accused=self.params.servers[peer], **fields, **copy)  # type: ignore[arg-type]
            out.append(Send(self.model_owner, evidence))
        return out

    def _norm_close(self, round_no: int, rnd: RunningSums) -> list[Action]:
        """Inputs close with owners whose share is here but whose verdict waits for a server's
        values: that server withheld them, or never had the owner's share (the owner withheld
        it, or crashed between sends). The reports in decide the owner when they cover all three
        components (``NormChecks.close``: two servers', as in a round on two servers), so the
        model owner sees whom each server holds and completes the round as it completes one an
        owner's share did not reach everywhere; an owner whose share only this server has is
        left out, as an owner that reached one server is."""
        if rnd.norm is None:
            return []
        out: list[Action] = []
        for owner in list(rnd.pending):
            outcome = rnd.norm.close(owner)
            if outcome is None:
                if rnd.norm.decided(owner) is None:
                    del rnd.pending[owner]
                continue
            out += self._norm_decided(round_no, rnd, owner, outcome, complete=False)
        return out


def _field_part(part: object, shape: tuple[int, ...]) -> RingArray | None:
    """A norm-checked share's component as a field vector (int64 words): a seed expanded
    (``normproof.seeded``), or the vector as sent (None: a keyed stream, which has no place here)."""
    if isinstance(part, Seed):
        return seeded(part.key, math.prod(shape)).view(np.int64).reshape(shape)
    return part if isinstance(part, np.ndarray) else None


def _outside_field(part: RingArray) -> bool:
    return bool(np.any(part.view(np.uint64) >= np.uint64(gf.Q)))
