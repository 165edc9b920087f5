"""Compute servers and the model owner's round, wired by an in-memory router: no sockets."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pytest

from asyncmpc.crypto.rss import InputSharer
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol import AggregationRound, ServerProtocol, input_shares
from asyncmpc.protocol.shares import key_messages
from asyncmpc.wire import messages as m
from tests.protocol.harness import CFG, MO, OWNERS, PARAMS, Router, send_inputs, setup


def test_sum_over_all_owners_in_order() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))
    assert rnd.result.contributors == OWNERS


@pytest.mark.parametrize("seed", range(20))
def test_any_delivery_order_gives_the_same_sum(seed: int) -> None:
    """Inputs may reach a server before the round is opened there: they wait, not fail."""
    rng = random.Random(seed)
    _, rnd, router, xs = setup()
    router.writable = seed % 2 == 0
    send_inputs(router, xs)
    router.post(MO, rnd.open())
    router.run(pick=lambda q: rng.randrange(len(q)), idle=lambda: rng.random() < 0.5)
    assert rnd.result is not None
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


def test_duplicate_input_share_is_refused_naming_the_sender() -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    router.run()
    share = input_shares(PARAMS, 1, xs[OWNERS[0]])[0]
    servers["server-0"].feed(OWNERS[0], share.msg)
    with pytest.raises(RemoteProtocolError, match="data-owner-0: second input share for round 1"):
        servers["server-0"].feed(OWNERS[0], share.msg)


def test_dropped_owner_is_left_out_after_close_inputs() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    late = OWNERS[-1]
    send_inputs(router, {o: x for o, x in xs.items() if o != late})
    router.run()
    assert not rnd.done
    router.post(MO, rnd.expire())  # deadline: close inputs, servers report what they hold
    router.run()
    assert rnd.result is not None and rnd.result.contributors == OWNERS[:-1]
    np.testing.assert_array_equal(rnd.result.total, sum(x for o, x in xs.items() if o != late))


def test_share_missing_at_one_server_makes_the_round_a_dispute() -> None:
    """Servers add shares up as they arrive (memory flat in the number of owners), so an owner
    whose vector share reached server 1 but not server 2 cannot be left out by server 1: it
    refuses. Going on with servers 0 and 2 would trust server 2's word that the share did not
    come, unchecked; the round ends as a dispute instead (the model owner runs it again as a
    MAC round, see test_disputes)."""
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    for owner, x in xs.items():
        actions = input_shares(PARAMS, 1, x)
        if owner == OWNERS[0]:
            actions = [a for a in actions if a.to != "server-2"]  # lost on the way to server 2
        router.post(owner, actions)
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.suspects == ("server-2",)
    assert (
        rnd.result.reason
        == "server-2 reports fewer owners than the other servers hold (data-owner-0 not reported by server-2)"
    )


def test_too_few_contributors_yields_nothing() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, {OWNERS[0]: xs[OWNERS[0]]})
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    assert rnd.result is not None and rnd.result.total is None
    assert "fewer than the minimum of 2" in rnd.result.reason


def test_a_round_that_lost_a_server_yields_nothing_to_run_again_with_macs() -> None:
    _, rnd, router, xs = setup()
    del router.servers["server-1"]  # server 1 is gone: nothing reaches it, nothing comes back
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    router.post(MO, rnd.expire())  # second deadline: go on with servers 0 and 2
    router.run()
    assert rnd.result is not None and rnd.result.total is None and rnd.result.recheck


def test_lying_server_is_caught_by_the_cross_check() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)

    def tamper(sender: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ResultShare) and sender == "server-2":
            a = msg.a.copy()
            a[3] += 1
            tag = bytes([msg.b_tag[0] ^ 1]) + msg.b_tag[1:]  # and it cannot forge the other tag
            return dataclasses.replace(msg, a=a, b_tag=tag)
        return msg

    router.run(tamper=tamper)
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.suspects == ("server-2",)
    assert "suspect server(s) server-2" in rnd.result.reason


@pytest.mark.parametrize(
    ("sender", "msg", "message"),
    [
        (
            "data-owner-0",
            m.OpenRound(session="test", round_no=5, owners=OWNERS, shape=(3,)),
            "a data-owner may not send 'open_round'",
        ),
        (
            "server-1",
            m.OpenRound(session="test", round_no=5, owners=OWNERS, shape=(3,)),
            "a compute-server may not send 'open_round'",
        ),
        ("model-owner", m.OpenRound(session="other", round_no=5, owners=OWNERS, shape=(3,)), "for session 'other'"),
        (
            "model-owner",
            m.OpenRound(session="test", round_no=5, owners=("server-1",), shape=(3,)),
            "names 'server-1', not a data owner",
        ),
        (
            "model-owner",
            m.Aggregate(session="test", round_no=1, contributors=("data-owner-0", "data-owner-0"), mac_key=bytes(32)),
            "names no owner, or one twice",
        ),
    ],
)
def test_messages_that_break_the_rules_are_refused(sender: str, msg: m.Message, message: str) -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    router.run()
    with pytest.raises(RemoteProtocolError, match=message):
        servers["server-0"].feed(sender, msg)
    send_inputs(router, xs)  # the server still serves the round afterwards
    router.run()
    assert rnd.result is not None
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


def test_wrong_shape_is_refused_and_the_round_goes_on() -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    router.run()
    bad = input_shares(PARAMS, 1, np.zeros(49, dtype=np.int64))[1]
    with pytest.raises(RemoteProtocolError, match=r"shape \(49,\) for round 1, expected \(50,\)"):
        servers[bad.to].feed(OWNERS[0], bad.msg)
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


def test_a_changed_component_alone_implicates_its_two_holders() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)

    def tamper(sender: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.ResultShare) and sender == "server-0":
            a = msg.a.copy()
            a[0] ^= 1 << 40
            return dataclasses.replace(msg, a=a, b_tag=msg.b_tag)
        return msg

    router.run(tamper=tamper)
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.suspects == ("server-0", "server-2")


def test_a_server_refusing_leaves_the_round_and_two_refusing_fail_it_without_an_exception() -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None and rnd.result.total is not None
    _, rnd2, router2, _ = setup(round_no=2)
    router2.servers = servers
    router2.post(MO, rnd2.open())
    router2.run()
    out = rnd2.feed("server-1", m.Reject(session="test", round_no=2, reason="cannot leave out data-owner-0"))
    assert out == [] and not rnd2.done and rnd2.live == ("server-0", "server-2")
    out = rnd2.feed("server-2", m.Reject(session="test", round_no=2, reason="cannot leave out data-owner-1"))
    assert out == [] and rnd2.result is not None and rnd2.result.total is None
    assert "server-2 refused: cannot leave out data-owner-1; fewer than two servers left" in rnd2.result.reason


@pytest.mark.parametrize("idle", [False, True])
def test_an_owner_that_reached_only_server_0_is_left_out_of_the_sums(idle: bool) -> None:
    """Seeds are dropped, or re-expanded and subtracted if the server had time to add them
    (``idle``); the round goes on without that owner."""
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    for owner, x in xs.items():
        actions = input_shares(PARAMS, 1, x)
        if owner == OWNERS[1]:
            assert actions[0].to == "server-0"
            actions = actions[:1]  # stopped after its first send
        router.post(owner, actions)
    router.run(idle=lambda: idle)
    router.post(MO, rnd.expire())
    router.run(idle=lambda: idle)
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, sum(x for o, x in xs.items() if o != OWNERS[1]))


def test_an_owner_whose_vector_reached_one_server_only_is_a_dispute_naming_the_other_two() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    for owner, x in xs.items():
        actions = input_shares(PARAMS, 1, x)
        router.post(owner, [a for a in actions if owner != OWNERS[1] or a.to == "server-1"])
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.suspects == ("server-0", "server-2")


def test_an_owner_whose_vectors_reached_no_two_servers_alike_is_a_dispute_naming_an_owner() -> None:
    """Vectors of one owner at server 1 and of another at server 2: no two servers can leave
    both out; the first refusal ends the round as a dispute, and the reason names an owner."""
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    for owner, x in xs.items():
        actions = input_shares(PARAMS, 1, x)
        keep = {OWNERS[1]: "server-1", OWNERS[2]: "server-2"}.get(owner)
        router.post(owner, [a for a in actions if keep is None or a.to == keep])
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    assert rnd.result is not None and rnd.result.total is None and rnd.result.suspects
    assert "cannot leave out data-owner-" in rnd.result.reason


# ------------------------------------------------------------------ keyed owners


def keyed_owners(router: Router, owners: tuple[str, ...] = OWNERS) -> dict[str, InputSharer]:
    """Keyed sharers for ``owners``, their keys registered with the servers."""
    sharers = {o: InputSharer(keyed=True) for o in owners}
    for owner, sharer in sharers.items():
        router.post(owner, key_messages(PARAMS, sharer))
    router.run()
    return sharers


def run_keyed_round(
    servers: dict[str, ServerProtocol],
    sharers: dict[str, InputSharer],
    round_no: int,
    owners: tuple[str, ...],
    shape: tuple[int, ...],
    rng: random.Random,
    *,
    senders: tuple[str, ...] | None = None,
) -> tuple[AggregationRound, dict[str, np.ndarray]]:
    """Open ``round_no`` for ``owners``; ``senders`` (default: all of them) send their shares;
    messages go in a random order, with servers idle now and then."""
    rnd = AggregationRound(PARAMS, round_no, owners, shape)
    router = Router(rnd, servers)
    xs = {o: np.frombuffer(os.urandom(8 * int(np.prod(shape))), dtype=np.int64).reshape(shape) for o in owners}
    router.post(MO, rnd.open())
    for owner in senders if senders is not None else owners:
        router.post(owner, input_shares(PARAMS, round_no, xs[owner], sharer=sharers[owner]))
    router.run(pick=lambda q: rng.randrange(len(q)), idle=lambda: rng.random() < 0.5)
    if not rnd.done:
        router.post(MO, rnd.expire())
        router.run(idle=lambda: rng.random() < 0.5)
    for server in servers.values():
        server.idle()  # round answered: the servers guess the next one
    return rnd, xs


@pytest.mark.parametrize("seed", range(6))
def test_keyed_owners_sum_over_rounds_whatever_the_next_round_turns_out_to_be(seed: int) -> None:
    """Servers expand keyed streams before the shares arrive, and after a round for the round
    they expect next; a next round with other owners, another shape or another number is
    corrected for, and the sums stay exact."""
    rng = random.Random(seed)
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    sharers = keyed_owners(Router(AggregationRound(PARAMS, 1, OWNERS, (1,)), servers))
    plan = [(1, OWNERS, (50,)), (2, OWNERS, (50,)), (3, OWNERS[:3], (50,)), (5, OWNERS, (50,)), (6, OWNERS, (7, 3))]
    for round_no, owners, shape in plan:
        rnd, xs = run_keyed_round(servers, sharers, round_no, owners, shape, rng)
        assert rnd.result is not None and rnd.result.cross_checked, rnd.result
        np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


def test_a_keyed_owner_that_never_sends_is_subtracted_from_the_sums() -> None:
    """Its streams were added before its share could arrive; leaving it out takes them out."""
    rng = random.Random(1)
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    sharers = keyed_owners(Router(AggregationRound(PARAMS, 1, OWNERS, (1,)), servers))
    run_keyed_round(servers, sharers, 1, OWNERS, (50,), rng)  # servers now guess round 2 with everyone
    rnd, xs = run_keyed_round(servers, sharers, 2, OWNERS, (50,), rng, senders=OWNERS[1:])
    assert rnd.result is not None and rnd.result.contributors == OWNERS[1:]
    np.testing.assert_array_equal(rnd.result.total, sum(x for o, x in xs.items() if o != OWNERS[0]))


def test_keyed_components_need_registered_keys() -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    router.run()
    sharer = InputSharer(keyed=True)
    share = input_shares(PARAMS, 1, xs[OWNERS[0]], sharer=sharer)[0]
    with pytest.raises(RemoteProtocolError, match="component a is keyed, but no key was registered for it"):
        servers["server-0"].feed(OWNERS[0], share.msg)
    keys = key_messages(PARAMS, sharer)[0].msg
    servers["server-0"].feed(OWNERS[0], keys)
    servers["server-0"].feed(OWNERS[0], keys)  # registered again (a reconnect): no change
    with pytest.raises(RemoteProtocolError, match="key a of 3 bytes, expected 16 or none"):
        servers["server-0"].feed(OWNERS[1], m.ShareKeys(session="test", a=b"abc", b=b""))
    with pytest.raises(RemoteProtocolError, match="registers no key"):
        servers["server-0"].feed(OWNERS[1], m.ShareKeys(session="test", a=b"", b=b""))
    servers["server-0"].feed(OWNERS[0], share.msg)  # now it is accepted


def test_an_owner_that_reconnects_with_new_keys_is_summed_right() -> None:
    """A restarted data owner registers new keys; streams announced with the old ones (in the
    round already open, and in the servers' guess) are taken out when its share arrives."""
    rng = random.Random(2)
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    sharers = keyed_owners(Router(AggregationRound(PARAMS, 1, OWNERS, (1,)), servers))
    run_keyed_round(servers, sharers, 1, OWNERS, (50,), rng)
    for server in servers.values():
        server.forget(OWNERS[0])  # its connection closed
    sharers[OWNERS[0]] = keyed_owners(Router(AggregationRound(PARAMS, 1, OWNERS, (1,)), servers), OWNERS[:1])[OWNERS[0]]
    rnd, xs = run_keyed_round(servers, sharers, 2, OWNERS, (50,), rng)
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


@pytest.mark.parametrize("reached", [("server-0", "server-1", "server-2"), ("server-0",), ()])
def test_an_owner_withdrawn_mid_round_counts_exactly_where_its_share_arrived(reached: tuple[str, ...]) -> None:
    """The model owner stops waiting for an owner whose connection closed: if its share reached
    every server it is summed, if only seeds reached server 0 it is left out, and the round
    ends without waiting for a deadline either way."""
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    gone, late = OWNERS[3], OWNERS[2]
    for owner in OWNERS[:2]:
        router.post(owner, input_shares(PARAMS, 1, xs[owner]))
    router.post(gone, [a for a in input_shares(PARAMS, 1, xs[gone]) if a.to in reached])
    router.run()
    router.post(MO, rnd.withdraw(gone))  # its connection closed
    router.run()
    router.post(late, input_shares(PARAMS, 1, xs[late]))
    router.run()
    assert rnd.result is not None and rnd.result.cross_checked
    summed = OWNERS if len(reached) == 3 else OWNERS[:3]
    assert rnd.result.contributors == summed
    np.testing.assert_array_equal(rnd.result.total, sum(xs[o] for o in summed))


def test_an_aggregate_over_owners_a_server_does_not_hold_is_refused_politely() -> None:
    """The model owner may ask again after a server left an owner out: a Reject, not a
    protocol error (which would close the model owner's connection and end the epoch)."""
    servers, rnd, router, _ = setup()
    router.post(MO, rnd.open())
    router.run()
    ask = m.Aggregate(session="test", round_no=1, contributors=("data-owner-0",), mac_key=bytes(32))
    [out] = servers["server-0"].feed(MO, ask)
    assert isinstance(out.msg, m.Reject) and "does not hold (or has left out) data-owner-0" in out.msg.reason
