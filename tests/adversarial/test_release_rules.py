"""One malicious player against the release rules, in the round's real state machines (no
sockets): each test is one attack, named after what the attacker tries, and asserts the
guarantee (SECURITY.md, "Claims"): the sums the model owner accepts are an honest run's, or the
round yields nothing and no honest player is blamed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from asyncmpc.crypto.field import P
from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.ring import encode
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.errors import BudgetSpent
from asyncmpc.protocol import AggregationRound, Send, ServerProtocol
from asyncmpc.protocol.aggregation import Kind
from asyncmpc.protocol.authenticated import MAC_HEADROOM, authenticated_shares
from asyncmpc.protocol.events import Drop
from asyncmpc.protocol.releases import input_id, key_id
from asyncmpc.protocol.shares import contribution_shares
from asyncmpc.roles.rounds import _stop_if_refused
from asyncmpc.wire import messages as m
from tests.protocol.harness import CFG, MO, OWNERS, PARAMS, PRIVATE_CFG, PRIVATE_PARAMS, Recorded, Router

pytestmark = pytest.mark.adversarial

SERVERS = tuple(p.name for p in CFG.servers)
SHAPE = (30,)
VICTIM = OWNERS[1]


def gradients(seed: int = 5) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {o: rng.normal(size=SHAPE) for o in OWNERS}


def request(step: int = 3) -> m.ModelUpdate:
    """What the owners compute their gradients from (the same for a re-run of the step)."""
    zeros = np.zeros(SHAPE, dtype=np.float64)
    return m.ModelUpdate(session=CFG.session, theta=zeros + 0.5, mean=zeros, scale=zeros + 1, step=step)


def shares(
    round_no: int, xs: dict[str, np.ndarray], owners: tuple[str, ...] = OWNERS, key: MacKey | None = None
) -> list[tuple[str, list[Send]]]:
    """Each owner's shares of its gradient for ``round_no``, tagged with the request's input id."""
    ident = input_id(request())
    out = []
    for owner in owners:
        if key is None:
            sends = contribution_shares(PARAMS, round_no, xs[owner], InputSharer(), ident)
        else:
            sends = authenticated_shares(PARAMS, round_no, xs[owner], InputSharer(), key, input_id=ident)
        out.append((owner, sends))
    return out


def encoded_sum(xs: dict[str, np.ndarray], owners: tuple[str, ...], *, mac: bool = False) -> np.ndarray:
    p = CFG.protocol
    terms = p.max_owners * (MAC_HEADROOM if mac else 1)
    return sum(encode(xs[o], p.frac_bits, max_terms=terms) for o in owners)  # type: ignore[return-value]


def deliver(router: Router, posts: list[tuple[str, list[Send]]]) -> None:
    for owner, sends in posts:
        router.post(owner, sends)
    router.run()


def results_to_model_owner(router_log: list[tuple[str, m.Message]]) -> list[m.ResultShare]:
    return [msg for _, msg in router_log if isinstance(msg, m.ResultShare)]


class Logged(Router):
    """A router that keeps every message the model owner receives, as (sender, message)."""

    def __init__(self, rnd: AggregationRound, servers: dict[str, ServerProtocol]) -> None:
        super().__init__(rnd, servers)
        self.to_model_owner: list[tuple[str, m.Message]] = []

    def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        outer = kwargs.pop("tamper", lambda s, msg: msg)

        def tamper(sender: str, msg: m.Message) -> m.Message:
            msg = outer(sender, msg)
            if sender in SERVERS and isinstance(msg, (m.ResultShare, m.Reject, m.Holding)):
                self.to_model_owner.append((sender, msg))
            return msg

        return super().run(*args, tamper=tamper, **kwargs)


# ------------------------------------------------------------------ a malicious model owner


def test_a_model_owner_opening_a_round_for_one_owner_gets_no_sum() -> None:
    """Attack 4: a round (or an Aggregate) that names a single owner would open its input."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    rnd = AggregationRound(PARAMS, 1, (VICTIM,), SHAPE)
    router = Logged(rnd, servers)
    router.post(MO, rnd.open())
    deliver(router, shares(1, xs, (VICTIM,)))
    assert not results_to_model_owner(router.to_model_owner)
    refusals = [msg for _, msg in router.to_model_owner if isinstance(msg, m.Reject)]
    assert {r.code for r in refusals} == {m.Refusal.TOO_FEW} and len(refusals) == 3
    ask = m.Aggregate(session=CFG.session, round_no=1, contributors=(VICTIM,), mac_key=bytes(32), full=True)
    for server in servers.values():  # asking for it in full changes nothing
        ((answer,),) = [server.feed(MO, ask)]
        assert isinstance(answer, Send) and isinstance(answer.msg, m.Reject)
        assert answer.msg.code is m.Refusal.TOO_FEW
    assert rnd.result is not None and rnd.result.total is None and not rnd.result.suspects


def test_a_model_owner_asking_a_mac_round_for_two_sets_gets_the_first_only() -> None:
    """Attack 4: in a MAC round every owner's share is kept apart, so two Aggregates over S and
    S without the victim would open the victim's input as their difference."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    key = MacKey.new()
    xs = gradients()
    opened = AggregationRound(PARAMS, 1, OWNERS, SHAPE, mac_key=key)
    router = Logged(opened, servers)
    router.post(MO, opened.open())
    deliver(router, shares(1, xs, key=key))
    assert opened.result is not None and opened.result.mac
    np.testing.assert_array_equal(opened.result.total, encoded_sum(xs, OWNERS, mac=True))
    without = tuple(o for o in OWNERS if o != VICTIM)
    ask = m.Aggregate(session=CFG.session, round_no=1, contributors=without, mac_key=b"", full=True)
    for server in servers.values():
        (answer,) = server.feed(MO, ask)
        assert isinstance(answer, Send) and isinstance(answer.msg, m.Reject)
        assert answer.msg.code is m.Refusal.OTHER_SET


def test_a_model_owner_asking_the_same_step_again_without_the_victim_gets_nothing() -> None:
    """Attack 4 across rounds: the same model and step asked again in a new round, over the
    others only; the owners compute the same gradients, and the difference would be the
    victim's. Every server remembers which contributors those inputs were released over."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    first = AggregationRound(PARAMS, 1, OWNERS, SHAPE)
    router = Logged(first, servers)
    router.post(MO, first.open())
    deliver(router, shares(1, xs))
    assert first.result is not None and first.result.cross_checked
    without = tuple(o for o in OWNERS if o != VICTIM)
    second = AggregationRound(PARAMS, 2, without, SHAPE)
    router = Logged(second, servers)
    router.post(MO, second.open())
    deliver(router, shares(2, xs, without))
    assert not results_to_model_owner(router.to_model_owner)
    assert second.result is not None and second.result.total is None
    assert second.result.refusal is m.Refusal.RERUN and not second.result.suspects
    # a MAC round of the same inputs over the same set is a legitimate re-run: it is answered
    key = MacKey.new()
    rerun = AggregationRound(PARAMS, 3, OWNERS, SHAPE, mac_key=key)
    router = Logged(rerun, servers)
    router.post(MO, rerun.open())
    deliver(router, shares(3, xs, key=key))
    assert rerun.result is not None
    np.testing.assert_array_equal(rerun.result.total, encoded_sum(xs, OWNERS, mac=True))


# ------------------------------------------------------------------ a malicious server


@pytest.mark.parametrize("how", ["wrong digest", "denies holding"])
def test_a_server_forcing_a_re_run_without_the_victim_opens_nothing_more(how: str) -> None:
    """Attack 2: server 2 flips its tag (a dispute); in the MAC re-run of the same inputs it
    reports a wrong digest for the victim, or denies holding it, to have it left out. The
    re-run's sum over the others, minus the disputed round's, would be the victim's gradient.
    The victim stays in (a re-run is over the disputed round's contributors: the honest
    servers release nothing else), the sum is the honest one, checked by the MAC, and no
    honest server is blamed."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    liar = "server-2"

    def flip_tag(sender: str, msg: m.Message) -> m.Message:
        if sender == liar and isinstance(msg, m.ResultShare) and msg.b_tag:
            return dataclasses.replace(msg, b_tag=bytes([msg.b_tag[0] ^ 1]) + msg.b_tag[1:])
        return msg

    disputed = AggregationRound(PARAMS, 1, OWNERS, SHAPE)
    router = Logged(disputed, servers)
    router.post(MO, disputed.open())
    for owner, sends in shares(1, xs):
        router.post(owner, sends)
    router.run(tamper=flip_tag)
    assert disputed.result is not None and disputed.result.total is None and liar in disputed.result.suspects
    released_first = [r for r in results_to_model_owner(router.to_model_owner) if r.contributors == OWNERS]
    assert len(released_first) == 3  # the curious model owner holds every a: the round-1 sum

    def wrong_digest(sender: str, msg: m.Message) -> m.Message:
        if sender == liar and isinstance(msg, m.Holding) and msg.digests:
            i = msg.owners.index(VICTIM)
            digests = list(msg.digests)
            if how == "wrong digest":
                digests[i] = bytes(len(digests[i]))
                return dataclasses.replace(msg, digests=tuple(digests))
            del digests[i]
            owners = tuple(o for o in msg.owners if o != VICTIM)
            return dataclasses.replace(msg, owners=owners, digests=tuple(digests))
        return msg

    key = MacKey.new()
    rerun = AggregationRound(PARAMS, 2, OWNERS, SHAPE, mac_key=key)
    router = Logged(rerun, servers)
    router.post(MO, rerun.open())
    for owner, sends in shares(2, xs, key=key):
        router.post(owner, sends)
    router.run(tamper=wrong_digest)
    assert rerun.result is not None and not rerun.result.cheater and rerun.result.contributors == OWNERS
    np.testing.assert_array_equal(rerun.result.total, encoded_sum(xs, OWNERS, mac=True))
    assert not [r for r in results_to_model_owner(router.to_model_owner) if VICTIM not in r.contributors]
    # and a model owner that asks the honest servers for the others only gets a refusal
    without = tuple(o for o in OWNERS if o != VICTIM)
    ask = m.Aggregate(session=CFG.session, round_no=2, contributors=without, mac_key=b"", full=True)
    for name in ("server-0", "server-1"):
        (answer,) = servers[name].feed(MO, ask)
        assert isinstance(answer, Send) and isinstance(answer.msg, m.Reject)
        assert answer.msg.code in (m.Refusal.OTHER_SET, m.Refusal.RERUN)


# ------------------------------------------------------------------ crashes (no attacker)


def test_owners_withdrawn_down_to_one_leave_the_round_without_a_sum() -> None:
    """Attack 3 without an attacker: three of four owners are lost mid-round; the servers'
    early answers would be over the one left. No server releases it, and the round yields
    nothing (not a zero sum, not that owner's gradient)."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    rnd = AggregationRound(PARAMS, 1, OWNERS, SHAPE)
    router = Logged(rnd, servers)
    router.post(MO, rnd.open())
    deliver(router, shares(1, xs, (OWNERS[0],)))
    for gone in OWNERS[1:]:
        router.post(MO, rnd.withdraw(gone))
    router.run()
    assert not results_to_model_owner(router.to_model_owner)
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.refusal is m.Refusal.TOO_FEW and "fewer than the minimum of 2" in rnd.result.reason
    assert rnd.result.kind is Kind.REFUSED


def test_a_server_answering_early_over_one_owner_is_refused_by_the_model_owner() -> None:
    """A lying server's early result over fewer than ``min_owners`` is a protocol error."""
    xs = gradients()
    rnd = AggregationRound(PARAMS, 1, (OWNERS[0],), SHAPE)
    rnd.open()
    fake = m.ResultShare(
        session=CFG.session, round_no=1, contributors=(OWNERS[0],), a=encode(xs[OWNERS[0]]), b_tag=bytes(16)
    )
    with pytest.raises(Exception, match="result share over 1 owner"):
        rnd.feed("server-0", fake)


# ------------------------------------------------------------------ a malicious data owner


@pytest.mark.parametrize("how", ["wrong shape", "not invited"])
def test_an_owner_whose_early_share_is_bad_is_dropped_and_the_model_owner_is_not(how: str) -> None:
    """Attack 5: a share that arrives before its round opens is checked when the round opens;
    a wrong one used to raise while the model owner's OpenRound was handled, so every server
    dropped the model owner. Now its sender is dropped, and the round goes on."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    rogue = OWNERS[3]
    invited = OWNERS if how == "wrong shape" else OWNERS[:3]
    rnd = AggregationRound(PARAMS, 1, invited, SHAPE)
    router = Logged(rnd, servers)
    bad = shares(1, {rogue: np.zeros(1) if how == "wrong shape" else xs[rogue]}, (rogue,))
    deliver(router, bad)  # before the round opens anywhere
    router.post(MO, rnd.open())
    router.run()
    assert {d.player for d in router.dropped} == {rogue} and len(router.dropped) == 3
    router.post(MO, rnd.withdraw(rogue))  # its connection closed
    honest = tuple(o for o in OWNERS if o != rogue)
    deliver(router, shares(1, xs, honest))
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, encoded_sum(xs, honest))


# ------------------------------------------------------------------ refusals are codes


def test_a_server_whose_budget_is_spent_is_not_blamed() -> None:
    """Attack 8: a server that refuses because its own [privacy] budget is spent used to be
    the round's suspect (a dispute naming an honest server). The refusal's code says why:
    the round yields nothing, no one is suspected, and training stops saying so."""
    servers = {s: ServerProtocol(PRIVATE_PARAMS, s, noise=Recorded(i), release_limit=0) for i, s in enumerate(SERVERS)}
    owners = tuple(p.name for p in PRIVATE_CFG.data_owners)
    rnd = AggregationRound(PRIVATE_PARAMS, 1, owners, SHAPE)
    router = Router(rnd, servers)
    router.post(MO, rnd.open())
    rng = np.random.default_rng(1)
    for owner in owners:
        x = rng.integers(-100, 100, size=SHAPE)
        router.post(owner, contribution_shares(PRIVATE_PARAMS, 1, x.astype(np.float64), InputSharer()))
    router.run()
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.refusal is m.Refusal.BUDGET and not rnd.result.suspects and rnd.result.kind is Kind.REFUSED
    with pytest.raises(BudgetSpent, match="budget allows 0 releases"):
        _stop_if_refused(rnd.result)


def test_drop_names_only_the_sender_of_the_bad_message() -> None:
    """A Drop carries the player that sent the bad message, with its error."""
    server = ServerProtocol(PARAMS, "server-0")
    early = shares(1, {OWNERS[0]: np.zeros(1)}, (OWNERS[0],))[0][1][0].msg
    assert server.feed(OWNERS[0], early) == []
    out = server.feed(MO, m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=SHAPE, mac_key=bytes(32)))
    (drop,) = [a for a in out if isinstance(a, Drop)]
    assert drop.player == OWNERS[0] and "input share of shape (1,) for round 1, expected (30,)" in str(drop.error)


def test_an_owner_equivocating_with_a_wrong_tag_is_named_the_culprit_and_no_server_is() -> None:
    """Attack on liveness by one data owner: in a MAC round it sends its two holders of
    component 2 different vectors and shifts its tag, so that no reconstruction verifies. Every
    disagreement is one its own digests explain, and three servers answered (a lying server's
    versions left out would have verified): the owner is the culprit, to be left out of the
    rounds that follow, and no server is named."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    key = MacKey.new()
    xs = gradients()
    rogue = OWNERS[2]
    rnd = AggregationRound(PARAMS, 1, OWNERS, SHAPE, mac_key=key)
    router = Logged(rnd, servers)
    router.post(MO, rnd.open())
    for owner, sends in shares(1, xs, key=key):
        if owner == rogue:
            for i, send in enumerate(sends):
                msg = send.msg
                assert isinstance(msg, m.InputShare) and msg.ma is not None and msg.mb is not None
                if send.to == "server-1":  # holds x2 as b, t2 as mb
                    assert isinstance(msg.b, np.ndarray)
                    msg = dataclasses.replace(msg, b=msg.b + 1, mb=(msg.mb + 1) % P)
                elif send.to == "server-2":  # holds x2 as a, t2 as ma
                    msg = dataclasses.replace(msg, ma=(msg.ma + 1) % P)
                sends[i] = dataclasses.replace(send, msg=msg)
        router.post(owner, sends)
    router.run()
    result = rnd.result
    assert result is not None and result.total is None and not result.cheater
    assert result.inconsistent == (rogue,) and result.culprit == rogue


def test_a_model_owner_sending_the_others_a_decoy_model_gets_no_sum() -> None:
    """Attack 4 within one round: the victim gets the real model, the others one whose
    gradient encodes to zero (a huge scale), so the round's sum would be the victim's alone.
    In an honest round every contributor answers the same request: the servers refuse a sum
    over shares whose input ids differ."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    decoy = dataclasses.replace(request(), scale=np.full(SHAPE, 1e300))
    rnd = AggregationRound(PARAMS, 1, OWNERS, SHAPE)
    router = Logged(rnd, servers)
    router.post(MO, rnd.open())
    for owner in OWNERS:
        ident = input_id(request() if owner == VICTIM else decoy)
        router.post(owner, contribution_shares(PARAMS, 1, xs[owner], InputSharer(), ident))
    router.run()
    assert not results_to_model_owner(router.to_model_owner)
    assert rnd.result is not None and rnd.result.total is None and rnd.result.refusal is m.Refusal.MIXED


def test_a_model_owner_sending_the_victim_its_own_mac_key_gets_no_sum() -> None:
    """Attack 4 in a MAC round: the victim tags under one key, the others under another. Each
    round's tag sums would then give the model owner <r_victim - r, x_victim>, one projection of
    the victim's input per round, and re-runs of the same step would give it all. Every owner
    names the key it tagged with (``key_id``): the servers refuse a sum over different keys."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    keys = {"victim": MacKey.new(), "others": MacKey.new()}
    rnd = AggregationRound(PARAMS, 1, OWNERS, SHAPE, mac_key=keys["others"])
    router = Logged(rnd, servers)
    router.post(MO, rnd.open())
    ident = input_id(request())
    for owner in OWNERS:
        key = keys["victim" if owner == VICTIM else "others"]
        sends = authenticated_shares(PARAMS, 1, xs[owner], InputSharer(), key, input_id=ident, key_id=key_id(key.key))
        router.post(owner, sends)
    router.run()
    assert not results_to_model_owner(router.to_model_owner)
    assert rnd.result is not None and rnd.result.total is None and rnd.result.refusal is m.Refusal.MIXED


def test_an_owner_sending_one_server_a_junk_input_id_cannot_stop_the_rounds() -> None:
    """Attack on liveness by one data owner: its share to server-2 carries a junk input id, so
    server-2 refuses the round as mixed while the other two release it. A refusal by a release
    rule that another server contradicts makes the refusing server the odd one: the round is
    disputed (no one excluded) and its MAC re-run is completed on the other two, with every
    owner in."""
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    xs = gradients()
    rogue = OWNERS[2]

    def junk(round_no: int, key: MacKey | None) -> list[tuple[str, list[Send]]]:
        posts = shares(round_no, xs, key=key)
        for owner, sends in posts:
            if owner == rogue:
                for i, send in enumerate(sends):
                    if send.to == "server-2":
                        sends[i] = dataclasses.replace(send, msg=dataclasses.replace(send.msg, input_id=bytes(16)))
        return posts

    first = AggregationRound(PARAMS, 1, OWNERS, SHAPE)
    router = Logged(first, servers)
    router.post(MO, first.open())
    deliver(router, junk(1, None))
    assert first.result is not None and first.result.kind is Kind.DISPUTED and first.result.suspects == ("server-2",)
    key = MacKey.new()
    rerun = AggregationRound(PARAMS, 2, OWNERS, SHAPE, mac_key=key)
    router = Logged(rerun, servers)
    router.post(MO, rerun.open())
    deliver(router, junk(2, key))
    assert rerun.result is not None and rerun.result.kind is Kind.SUMMED and rerun.result.contributors == OWNERS
    assert rerun.result.servers == ("server-0", "server-1")
    np.testing.assert_array_equal(rerun.result.total, encoded_sum(xs, OWNERS, mac=True))
