"""Proof of a server's lie in a norm check (``protocol.normcourt``), without sockets: three
servers and the model owner's round wired by the protocol tests' router, every player with a
key the others know (as they learn it from TLS). A server that opens false values on a
component, or forwards a digest list the owner did not sign, is convicted on the honest
holder's evidence; evidence made up against an honest server convicts no one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.normproof import Component, NormSpec, context_of, open_components
from asyncmpc.crypto.signing import Signer
from asyncmpc.protocol import AggregationRound, ServerProtocol, normcourt
from asyncmpc.protocol.normcourt import NormCourt, opened_digest
from asyncmpc.protocol.normshares import norm_shares
from asyncmpc.protocol.servernorm import _field_part
from asyncmpc.wire import messages as m
from tests.protocol.harness import CFG, MO, OWNERS, PARAMS, Router

NORM = dataclasses.replace(PARAMS, norm_bound=4 << PARAMS.frac_bits)
SHAPE = (40,)
SERVERS = tuple(p.name for p in CFG.servers)
LIAR, VICTIM = "server-2", OWNERS[1]  # server-2 holds components 2 and 0


class Deployment:
    def __init__(self) -> None:
        self.signers = {p: Signer(ec.generate_private_key(ec.SECP256R1())) for p in (*OWNERS, *SERVERS)}
        keys = {p: s.public_key() for p, s in self.signers.items()}
        self.servers = {s: ServerProtocol(NORM, s) for s in SERVERS}
        for name, server in self.servers.items():
            server.keys, server.signer = keys, self.signers[name]
        self.court = NormCourt(NORM)
        self.court.keys = keys
        self.rnd = AggregationRound(NORM, 1, OWNERS, SHAPE, norm=True, court=self.court)
        self.router = Router(self.rnd, self.servers)
        self.router.post(MO, self.rnd.open())
        for i, owner in enumerate(OWNERS):
            values = np.random.default_rng(i).normal(scale=0.1, size=SHAPE)
            self.router.post(
                owner, norm_shares(NORM, owner, 1, values, nonce=self.rnd.nonce, sign=self.signers[owner].sign)
            )
        self.evidence: list[tuple[str, m.NormEvidence]] = []

    def resign(self, msg: m.NormOpened) -> m.NormOpened:
        """The liar signs its altered message, as a malicious server can."""
        digest = opened_digest(NORM.session, self.rnd.nonce, LIAR, msg)
        return dataclasses.replace(msg, server_signature=self.signers[LIAR].sign(digest))

    def run(self, alter: object) -> None:
        def tamper(sender: str, msg: m.Message) -> m.Message:
            if isinstance(msg, m.NormEvidence):
                self.evidence.append((sender, msg))
            if sender == LIAR and isinstance(msg, m.NormOpened) and msg.owner == VICTIM:
                return self.resign(alter(msg))  # type: ignore[operator]
            return msg

        self.router.run(tamper=tamper)


def _plus_one(v: np.ndarray) -> np.ndarray:
    return gf.add(v.view(np.uint64), np.ones(v.shape, dtype=np.uint64)).view(np.int64)


def test_a_server_opening_false_values_on_a_component_is_convicted_on_the_other_holders_evidence() -> None:
    d = Deployment()
    d.run(lambda msg: dataclasses.replace(msg, a=_plus_one(msg.a)))  # component 2: held by server-1 too
    assert [(s, e.accused, e.component) for s, e in d.evidence] == [("server-1", LIAR, 2)]
    assert list(d.court.convicted) == [LIAR]
    assert d.rnd.result is not None and d.rnd.result.total is None  # the round is still disputed


def test_a_server_forwarding_digests_the_owner_did_not_sign_is_convicted() -> None:
    d = Deployment()
    d.run(lambda msg: dataclasses.replace(msg, digests=(bytes(32), *msg.digests[1:])))
    assert {(e.accused, e.x is None) for _, e in d.evidence} == {(LIAR, True)}
    assert list(d.court.convicted) == [LIAR]


def test_evidence_made_up_against_an_honest_server_convicts_no_one() -> None:
    """server-2 lies to the model owner instead: it takes server-0's real signed message on a
    component both hold (0) and shows a copy of its own making, or values it altered."""
    d = Deployment()
    kept: list[m.NormOpened] = []

    def keep(sender: str, msg: m.Message) -> m.Message:
        if sender == "server-0" and isinstance(msg, m.NormOpened) and msg.owner == VICTIM:
            kept.append(msg)
        return msg

    d.router.run(tamper=keep)
    assert d.rnd.result is not None and d.rnd.result.total is not None and not d.court.convicted
    told = kept[0]
    fields = {f: getattr(told, f) for f in ("owner", "digests", "a", "b", "signature", "input_id", "server_signature")}
    common = {"session": NORM.session, "round_no": 1, "accused": "server-0", **fields}
    copy = np.random.default_rng(9).integers(0, 2**62, size=SHAPE).astype(np.int64)
    payload = np.zeros(1, dtype=np.int64)
    made_up = [
        m.NormEvidence(**common, component=0, x=copy, payload=payload),  # a copy that is not the owner's
        m.NormEvidence(**{**common, "a": _plus_one(told.a)}, component=0, x=copy, payload=payload),  # not its words
        m.NormEvidence(**common),  # a list the owner signed
    ]
    for evidence in made_up:
        assert d.court.hear(LIAR, evidence) is None  # type: ignore[arg-type]
    assert not d.court.convicted


# An attack review's: framing an honest server with its own genuine signed message, its values
# reshaped or split otherwise (the same bytes), or replaying it to cost the model owner work.

FRAMER = "server-2"  # holds components 2 and 0; server-0 holds 0 and 1: both hold 0


def _honest_round() -> tuple[Deployment, m.NormOpened, m.InputShare]:
    d = Deployment()
    kept: list[m.NormOpened] = []
    shares: list[m.InputShare] = []

    def keep(sender: str, msg: m.Message) -> m.Message:
        if sender == "server-0" and isinstance(msg, m.NormOpened) and msg.owner == VICTIM:
            kept.append(msg)
        if sender == VICTIM and isinstance(msg, m.InputShare):
            shares.append(msg)
        return msg

    # the router calls tamper(sender, msg) for every message; find the share sent to server-2
    d.router.run(tamper=keep)
    assert d.rnd.result is not None and d.rnd.result.total is not None and not d.court.convicted
    return d, kept[0], shares


def _evidence(d: Deployment, told: m.NormOpened, share: m.InputShare, a: np.ndarray, b: np.ndarray) -> m.NormEvidence:
    x = _field_part(share.b, SHAPE)  # server-2's b is component 0 (seed-expanded)
    fields = {f: getattr(told, f) for f in ("owner", "digests", "signature", "input_id", "server_signature")}
    return m.NormEvidence(
        session=NORM.session,
        round_no=1,
        accused="server-0",
        **fields,
        a=a,
        b=b,
        component=0,
        x=x,
        payload=share.norm_b,
    )


def _liar_share(d: Deployment, shares: list[m.InputShare]) -> m.InputShare:
    spec = NormSpec(NORM.norm_bound, int(np.prod(SHAPE)))
    for s in shares:
        x = _field_part(s.b, SHAPE)
        if x is None or s.norm_b is None:
            continue
        ctx = context_of(NORM.session, 1, VICTIM, s.input_id, spec)
        try:
            open_components(
                spec,
                ctx,
                tuple(s.norm_digests),
                {0: Component(x.reshape(-1).view(np.uint64), s.norm_b.view(np.uint64))},
            )
            return s
        except ValueError:
            continue
    raise AssertionError("no share with component 0 as b")


def test_values_reshaped_do_not_frame_an_honest_server() -> None:
    d, told, shares = _honest_round()
    share = _liar_share(d, shares)
    ev = _evidence(d, told, share, told.a.reshape(-1, 1), told.b)  # same bytes, 2-D
    assert d.court.hear(FRAMER, ev) is None, d.court.convicted


def test_values_split_otherwise_do_not_frame_an_honest_server() -> None:
    d, told, shares = _honest_round()
    share = _liar_share(d, shares)
    both = np.concatenate([told.a, told.b])
    ev = _evidence(d, told, share, both[: told.a.size - 1], both[told.a.size - 1 :])  # same bytes, other split
    assert d.court.hear(FRAMER, ev) is None, d.court.convicted


def test_repeated_evidence_is_not_reverified(monkeypatch: pytest.MonkeyPatch) -> None:
    """A malicious server replays an honest server's genuine message with its own genuine copy:
    each hearing costs the model owner a full open_components (seconds at 10^6), on its event
    loop, without limit, and in rounds that were never disputed."""
    d, told, shares = _honest_round()
    share = _liar_share(d, shares)
    calls = []
    real = normcourt.open_components
    monkeypatch.setattr(normcourt, "open_components", lambda *a, **k: calls.append(1) or real(*a, **k))
    ev = _evidence(d, told, share, told.a, told.b)
    for _ in range(5):
        assert d.court.hear(FRAMER, ev) is None
    assert len(calls) <= 1, f"{len(calls)} full re-openings for one undisputed round's evidence"


def test_an_owner_reconnecting_with_a_new_key_does_not_make_an_honest_servers_list_look_unsigned() -> None:
    """An attack review's: the owner signed under its first key, which the servers verified;
    it then reconnects with a re-issued certificate. A malicious server shows the model owner
    an honest server's genuine message: its list must not look unsigned under the new key."""
    d, told, _ = _honest_round()
    keys = dict(d.court.keys)
    keys[VICTIM] = Signer(ec.generate_private_key(ec.SECP256R1())).public_key()  # the owner's new key
    d.court.keys = keys
    fields = {f: getattr(told, f) for f in ("owner", "digests", "a", "b", "signature", "input_id", "server_signature")}
    evidence = m.NormEvidence(session=NORM.session, round_no=1, accused="server-0", **fields)  # type: ignore[arg-type]
    assert d.court.hear(FRAMER, evidence) is None and not d.court.convicted
