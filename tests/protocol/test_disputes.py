"""MAC rounds and disputes, without sockets: who lied is proved; an owner whose holders report
different shares is named and kept in the verified sum, and no server is blamed for it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from asyncmpc.crypto.field import P
from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.ring import encode
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol import AggregationRound, ServerProtocol
from asyncmpc.protocol.aggregation import Kind
from asyncmpc.protocol.authenticated import MAC_HEADROOM, authenticated_shares
from asyncmpc.protocol.shares import key_messages
from asyncmpc.wire import messages as m
from tests.protocol.harness import CFG, MO, OWNERS, PARAMS, Router

SERVERS = tuple(p.name for p in CFG.servers)
SHAPE = (40,)


def values() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {o: rng.normal(size=SHAPE) for o in OWNERS}


def honest_sum(xs: dict[str, np.ndarray], owners: tuple[str, ...] = OWNERS) -> np.ndarray:
    p = CFG.protocol
    return sum(encode(xs[o], p.frac_bits, max_terms=p.max_owners * MAC_HEADROOM) for o in owners)  # type: ignore[return-value]


def mac_round(
    live: tuple[str, ...] = SERVERS, round_no: int = 1
) -> tuple[dict[str, ServerProtocol], AggregationRound, Router, MacKey]:
    servers = {s: ServerProtocol(PARAMS, s) for s in SERVERS}
    key = MacKey.new()
    rnd = AggregationRound(PARAMS, round_no, OWNERS, SHAPE, servers=live, mac_key=key)
    router = Router(rnd, servers)
    router.post(MO, rnd.open())
    return servers, rnd, router, key


def send(router: Router, xs: dict[str, np.ndarray], key: MacKey, round_no: int = 1) -> None:
    for owner, x in xs.items():
        router.post(owner, authenticated_shares(PARAMS, round_no, x, InputSharer(), key))


def cheat(server: str, *fields: str):  # type: ignore[no-untyped-def]
    """A tamper hook: ``server`` changes the named fields of its result share."""

    def tamper(sender: str, msg: m.Message) -> m.Message:
        if sender != server or not isinstance(msg, m.ResultShare):
            return msg
        changes: dict[str, object] = {}
        for f in fields:
            if f == "b" and msg.b is None:  # a tagged answer: its tag lies
                changes["b_tag"] = bytes([msg.b_tag[0] ^ 1]) + msg.b_tag[1:]
                continue
            v = getattr(msg, f).copy()
            if f.startswith("m"):
                v[0] = (int(v[0]) + 12345) % P
            else:
                v[3] ^= np.int64(-(1 << 63))  # adds 2^63
            changes[f] = v
        return dataclasses.replace(msg, **changes)

    return tamper


def test_an_honest_mac_round_gives_the_sum_and_names_no_one() -> None:
    _, rnd, router, key = mac_round()
    xs = values()
    send(router, xs, key)
    router.run()
    r = rnd.result
    assert r is not None and r.mac and r.cross_checked and not r.cheater and not r.inconsistent
    np.testing.assert_array_equal(r.total, honest_sum(xs))


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("fields", [("a",), ("b",), ("ma",), ("mb",), ("a", "ma"), ("a", "b"), ("a", "b", "ma", "mb")])
def test_a_cheating_server_is_named_and_the_sum_is_still_right(server: str, fields: tuple[str, ...]) -> None:
    _, rnd, router, key = mac_round()
    xs = values()
    send(router, xs, key)
    router.run(tamper=cheat(server, *fields))
    r = rnd.result
    assert r is not None and r.cheater == server and not r.cross_checked and r.kind is Kind.CAUGHT
    np.testing.assert_array_equal(r.total, honest_sum(xs))


def test_a_cheat_with_a_difference_that_fools_a_ring_mac_is_caught() -> None:
    """2^63 times anything is 0 mod 2^64 for even keys: the field MAC is not fooled."""
    _, rnd, router, key = mac_round()
    xs = values()
    send(router, xs, key)
    router.run(tamper=cheat("server-1", "a"))  # adds 2^63
    assert rnd.result is not None and rnd.result.cheater == "server-1"


def test_an_owner_that_sends_two_holders_different_shares_is_named_and_no_server_is_blamed() -> None:
    """Its input is the version its own MAC tag verifies; the component where its holders
    disagree is explained by the digests, so neither holder is named."""
    _servers, rnd, router, key = mac_round()
    xs = values()
    liar = OWNERS[1]
    for owner, x in xs.items():
        sends = authenticated_shares(PARAMS, 1, x, InputSharer(), key)
        if owner == liar:  # component 2 (a vector) goes to servers 1 and 2: give server 2 another
            s2 = sends[2].msg
            assert isinstance(s2, m.InputShare) and isinstance(s2.a, np.ndarray)
            sends[2] = dataclasses.replace(sends[2], msg=dataclasses.replace(s2, a=s2.a + 1))
        router.post(owner, sends)
    router.run()
    r = rnd.result
    assert r is not None and r.inconsistent == (liar,) and not r.cheater and r.contributors == OWNERS
    np.testing.assert_array_equal(r.total, honest_sum(xs))


@pytest.mark.parametrize("also", ["nothing else", "its vector"])
def test_a_server_that_lies_about_a_digest_costs_nothing_and_no_server_is_blamed(also: str) -> None:
    """The owner's shares were consistent. When the sums check, digests are not even looked at;
    when the liar also changes its vector, the round is asked again in full, the digests name
    the owner (no proof against it), the disagreeing component is explained, and the sum that
    verifies is kept: no one is excluded, the owner stays in."""
    _, rnd, router, key = mac_round()
    xs = values()
    send(router, xs, key)

    def tamper(sender: str, msg: m.Message) -> m.Message:
        if sender == "server-0" and isinstance(msg, m.ResultShare):
            msg = dataclasses.replace(msg, digests=(bytes(64), *msg.digests[1:]))
            if also == "its vector":
                a = msg.a.copy()
                a[0] += 1
                msg = dataclasses.replace(msg, a=a)
        return msg

    router.run(tamper=tamper)
    r = rnd.result
    assert r is not None and not r.cheater and r.contributors == OWNERS
    assert r.inconsistent == (() if also == "nothing else" else (OWNERS[0],))
    np.testing.assert_array_equal(r.total, honest_sum(xs))


def test_a_server_that_denies_holding_an_owner_is_left_out_of_the_mac_round() -> None:
    """The other two hold every owner between them (any two hold every component): the round
    is summed on them, over everyone, and the MAC checks it."""
    _, rnd, router, key = mac_round()
    xs = values()
    send(router, xs, key)

    def tamper(sender: str, msg: m.Message) -> m.Message:
        if sender == "server-2" and isinstance(msg, m.ResultShare):  # it answers that it holds fewer
            return m.Holding(session=msg.session, round_no=1, owners=msg.contributors[1:], digests=msg.digests[1:])
        return msg

    router.run(tamper=tamper)
    r = rnd.result
    assert r is not None and not r.cheater and r.contributors == OWNERS
    assert r.servers == ("server-0", "server-1")
    np.testing.assert_array_equal(r.total, honest_sum(xs))


def test_a_two_server_mac_round_refuses_a_changed_once_held_component_and_blames_no_one() -> None:
    live = ("server-0", "server-1")  # server 0's a (component 0) is held by no one else here
    _, rnd, router, key = mac_round(live)
    xs = values()
    send(router, xs, key)
    router.run(tamper=cheat("server-0", "a"))
    r = rnd.result
    assert r is not None and r.total is None and not r.cheater


def test_a_two_server_mac_round_names_a_cheater_on_the_twice_held_component() -> None:
    live = ("server-0", "server-1")  # component 1: server 0's b and server 1's a
    _, rnd, router, key = mac_round(live)
    xs = values()
    send(router, xs, key)
    router.run(tamper=cheat("server-1", "a"))
    r = rnd.result
    assert r is not None and r.cheater == "server-1"
    np.testing.assert_array_equal(r.total, honest_sum(xs))


def test_keyed_owners_take_part_in_mac_rounds_with_their_registered_streams() -> None:
    servers, rnd, router, key = mac_round(round_no=3)
    xs = values()
    for owner, x in xs.items():
        sharer = InputSharer(keyed=True)
        for k in key_messages(PARAMS, sharer):
            servers[k.to].feed(owner, k.msg)
        router.post(owner, authenticated_shares(PARAMS, 3, x, sharer, key))
    router.run(tamper=cheat("server-0", "b"))
    r = rnd.result
    assert r is not None and r.cheater == "server-0"
    np.testing.assert_array_equal(r.total, honest_sum(xs))


def test_a_mac_round_refuses_field_values_outside_the_field_naming_the_owner() -> None:
    servers, _rnd, router, key = mac_round()
    router.run()  # the round is open at the servers
    send_one = authenticated_shares(PARAMS, 1, values()[OWNERS[0]], InputSharer(), key)[1].msg
    assert isinstance(send_one, m.InputShare) and isinstance(send_one.mb, np.ndarray)
    bad = dataclasses.replace(send_one, mb=np.array([P], dtype=np.int64))
    with pytest.raises(RemoteProtocolError, match=f"{OWNERS[0]}: round 1: mb holds values outside F_p"):
        servers["server-1"].feed(OWNERS[0], bad)
    plain = dataclasses.replace(send_one, ma=None, mb=None)
    with pytest.raises(RemoteProtocolError, match="MAC round: ma must be 1 field element"):
        servers["server-1"].feed(OWNERS[0], plain)


def test_answers_for_another_round_never_count_and_a_future_one_is_a_protocol_error() -> None:
    _, rnd, router, key = mac_round(round_no=5)
    xs = values()
    send(router, xs, key, round_no=5)
    router.run()  # every server reported; the round asked for the sum (Aggregate) and got it
    assert rnd.result is not None
    late = m.ResultShare(session="test", round_no=4, contributors=OWNERS, a=np.zeros(SHAPE, dtype=np.int64))
    fresh = AggregationRound(PARAMS, 5, OWNERS, SHAPE, mac_key=key)
    assert fresh.feed("server-0", late) == []  # an earlier round's answer is ignored
    ahead = dataclasses.replace(late, round_no=6)
    with pytest.raises(RemoteProtocolError, match="server-0: 'result_share' for round 6, expected 5"):
        fresh.feed("server-0", ahead)
    np.testing.assert_array_equal(rnd.result.total, honest_sum(xs))
