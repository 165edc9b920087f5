"""Lost, silent and restarted players, without sockets: the exceptional flows of a round."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.ring import encode
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.protocol import AggregationRound, ServerProtocol, input_shares
from asyncmpc.protocol.aggregation import Kind, Phase
from asyncmpc.protocol.authenticated import MAC_HEADROOM, authenticated_shares
from asyncmpc.protocol.shares import key_messages
from asyncmpc.wire import messages as m
from tests.protocol.harness import CFG, MO, OWNERS, PARAMS, Router, send_inputs, setup

SERVERS = tuple(p.name for p in CFG.servers)


def vectors(shape: tuple[int, ...] = (50,)) -> dict[str, np.ndarray]:
    return {o: np.frombuffer(os.urandom(8 * int(np.prod(shape))), dtype=np.int64).reshape(shape) for o in OWNERS}


class Recording(Router):
    """A router that also keeps every message it delivers, as (to, message)."""

    def __init__(self, rnd: AggregationRound, servers: dict[str, ServerProtocol]) -> None:
        super().__init__(rnd, servers)
        self.delivered: list[tuple[str, m.Message]] = []

    def run(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        def tamper(sender: str, msg: m.Message) -> m.Message:
            self.delivered.append((sender, msg))
            return msg

        super().run(*args, tamper=tamper, **kwargs)


def assert_recheck(rnd: AggregationRound, servers: tuple[str, ...]) -> None:
    """An ordinary round that ended on two servers yields nothing: their answers in full could
    not be checked, so it runs again as a MAC round on them (``RoundResult.recheck``)."""
    assert rnd.result is not None and rnd.result.total is None and rnd.result.kind is Kind.RECHECK
    assert rnd.result.servers == servers and not rnd.result.suspects


@pytest.mark.parametrize("lost", ["server-0", "server-1", "server-2"])
def test_a_server_lost_after_the_others_answered_leaves_a_round_to_recheck_on_two(lost: str) -> None:
    _servers, rnd, router, xs = setup()
    del router.servers[lost]  # it crashed: nothing reaches it, nothing comes back
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert not rnd.done and rnd.waiting_on == (lost,) and rnd.answered == 2
    router.post(MO, rnd.lose(lost, f"{lost}'s connection closed"))  # early tagged answers cannot be used
    router.run()
    assert_recheck(rnd, tuple(s for s in SERVERS if s != lost))


def test_a_server_lost_before_anyone_answered_waits_for_the_other_two() -> None:
    _, rnd, router, xs = setup()
    del router.servers["server-2"]
    router.post(MO, rnd.open())
    assert rnd.lose("server-2") == []  # the others have not reported yet
    send_inputs(router, xs)
    router.run()
    assert_recheck(rnd, ("server-0", "server-1"))


def test_a_server_lost_after_aggregate_is_asked_again_in_full_and_late_answers_are_ignored() -> None:
    """Owner 3 is missing: the servers report holdings, the model owner asks three servers for
    tagged sums; server 0 dies before answering; servers 1 and 2 are asked again in full. The
    tagged answers still on their way are not taken for the full ones."""
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, {o: x for o, x in xs.items() if o != OWNERS[3]})
    router.run()
    asks = []
    for action in rnd.expire():  # close inputs; each server reports what it holds
        (holding,) = servers[action.to].feed(MO, action.msg)
        asks += rnd.feed(action.to, holding.msg)
    assert [a.msg.KIND for a in asks] == ["aggregate"] * 3 and rnd.asks == 1 and rnd.phase is Phase.ASKED
    tagged = [(a.to, servers[a.to].feed(MO, a.msg)[0].msg) for a in asks if a.to != "server-0"]
    again = rnd.lose("server-0", "server-0's connection closed")
    assert all(isinstance(a.msg, m.Aggregate) and a.msg.full for a in again) and len(again) == 2
    for sender, answer in tagged:  # the tagged answers arrive first: not taken for the full ones
        assert rnd.feed(sender, answer) == [] and not rnd.done
    for action in again:
        rnd.feed(action.to, servers[action.to].feed(MO, action.msg)[0].msg)
    assert_recheck(rnd, ("server-1", "server-2"))


def test_a_two_server_mac_round_answers_at_once_in_full() -> None:
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    key = MacKey.new()
    rnd = AggregationRound(PARAMS, 1, OWNERS, (50,), servers=("server-0", "server-2"), mac_key=key)
    router = Recording(rnd, {s: servers[s] for s in rnd.live})
    xs = {o: np.random.default_rng(i).normal(size=50) for i, o in enumerate(OWNERS)}
    router.post(MO, rnd.open())
    for owner, x in xs.items():
        router.post(owner, [a for a in authenticated_shares(PARAMS, 1, x, InputSharer(), key) if a.to in rnd.live])
    router.run()
    assert rnd.result is not None and rnd.result.servers == ("server-0", "server-2") and rnd.result.mac
    p = CFG.protocol
    expected = sum(encode(x, p.frac_bits, max_terms=p.max_owners * MAC_HEADROOM) for x in xs.values())
    np.testing.assert_array_equal(rnd.result.total, expected)
    sent = [msg.KIND for _, msg in router.delivered]
    assert "aggregate" not in sent and sent.count("result_share") == 2


def test_losing_two_servers_fails_the_round_with_a_reason() -> None:
    _, rnd, router, _xs = setup()
    router.post(MO, rnd.open())
    rnd.lose("server-0", "server-0's connection closed")
    rnd.lose("server-1", "server-1 was silent for 5s")
    assert rnd.result is not None and rnd.result.total is None
    assert rnd.result.reason == "server-1 was silent for 5s; fewer than two servers left"
    with pytest.raises(ValueError, match="needs two servers"):
        AggregationRound(PARAMS, 2, OWNERS, (5,), servers=("server-1",))


def test_messages_from_a_lost_server_are_ignored() -> None:
    _servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    rnd.lose("server-1")
    send_inputs(router, xs)
    router.run()  # server-1 still answers, early: not taken
    assert_recheck(rnd, ("server-0", "server-2"))


def test_expire_twice_goes_on_without_silent_servers() -> None:
    _, rnd, router, xs = setup()
    del router.servers["server-1"]
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    router.post(MO, rnd.expire())  # CloseInputs to server-1: nothing comes back
    router.run()
    router.post(MO, rnd.expire())
    router.run()
    assert_recheck(rnd, ("server-0", "server-2"))


# ------------------------------------------------------------------ the server side


def test_losing_the_model_owner_ends_the_epoch_and_round_numbers_may_come_again() -> None:
    servers, rnd, router, xs = setup(round_no=5)
    router.post(MO, rnd.open())
    send_inputs(router, {o: x for o, x in xs.items() if o != OWNERS[0]}, round_no=5)
    router.run()
    assert not rnd.done
    for s in servers.values():
        assert s.open_rounds == (5,)
        s.forget(MO)  # the model owner's connection closed
        assert s.open_rounds == ()
    rnd2 = AggregationRound(PARAMS, 5, OWNERS, (50,))
    router2 = Router(rnd2, servers)
    router2.post(MO, rnd2.open())
    send_inputs(router2, xs, round_no=5)
    router2.run()
    assert rnd2.result is not None and rnd2.result.cross_checked
    np.testing.assert_array_equal(rnd2.result.total, sum(xs.values()))


def test_stale_shares_are_ignored_and_early_ones_are_bounded() -> None:
    servers, rnd, router, xs = setup(round_no=3)
    router.post(MO, rnd.open())
    router.run()
    s0 = servers["server-0"]
    stale = input_shares(PARAMS, 2, xs[OWNERS[0]])[0].msg
    assert s0.feed(OWNERS[0], stale) == []  # round 2 never opened here and is behind: dropped
    for r in (10, 11, 12):
        assert s0.feed(OWNERS[0], input_shares(PARAMS, r, xs[OWNERS[0]])[0].msg) == []
    assert s0.waiting.rounds == [11, 12]  # at most two round numbers wait


def keyed_round_opened() -> tuple[dict[str, ServerProtocol], AggregationRound, Router, dict[str, InputSharer]]:
    """Keyed owners registered with three servers, and round 1 opened for them."""
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    rnd = AggregationRound(PARAMS, 1, OWNERS, (50,))
    router = Router(rnd, servers)
    sharers = {o: InputSharer(keyed=True) for o in OWNERS}
    for owner, sharer in sharers.items():
        router.post(owner, key_messages(PARAMS, sharer))
    router.run()
    router.post(MO, rnd.open())
    router.run()
    return servers, rnd, router, sharers


def assert_keyed_round_exact(rnd: AggregationRound, router: Router, sharers: dict[str, InputSharer]) -> None:
    """Every owner shares round 1 under its sharer's current keys: the sum is exact."""
    xs = vectors()
    for owner, x in xs.items():
        router.post(owner, input_shares(PARAMS, 1, x, sharer=sharers[owner]))
    router.run(idle=lambda: True)
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()))


def test_a_replaced_key_takes_the_old_streams_out_of_rounds_not_yet_held() -> None:
    """An owner that lost the model owner registers new keys; a server that had expanded the
    old streams for an open round replaces them, and the sum stays exact."""
    servers, rnd, router, sharers = keyed_round_opened()
    for s in servers.values():
        s.idle()  # streams of every owner expanded into the sums
    sharers[OWNERS[2]].rekey()
    router.post(OWNERS[2], key_messages(PARAMS, sharers[OWNERS[2]]))
    assert_keyed_round_exact(rnd, router, sharers)


def test_a_server_answers_a_second_aggregate_in_full() -> None:
    servers, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None
    again = m.Aggregate(session="test", round_no=1, contributors=OWNERS, mac_key=b"", full=True)
    answers = {name: s.feed(MO, again)[0].msg for name, s in servers.items() if name != "server-1"}
    assert all(isinstance(a, m.ResultShare) and a.b is not None for a in answers.values())
    total = answers["server-0"].a + answers["server-0"].b + answers["server-2"].a  # type: ignore[attr-defined,operator]
    np.testing.assert_array_equal(total, sum(xs.values()))


def test_requests_for_rounds_a_server_does_not_have_are_refused_politely() -> None:
    servers, _, _, _ = setup()
    s = servers["server-1"]
    out = s.feed(MO, m.Aggregate(session="test", round_no=7, contributors=OWNERS, mac_key=bytes(32)))
    assert isinstance(out[0].msg, m.Reject) and "not open at server-1" in out[0].msg.reason
    assert s.feed(MO, m.Withdraw(session="test", round_no=7, owners=(OWNERS[0],))) == []


def test_a_restarted_owner_with_new_keys_replaces_streams_expanded_for_its_old_process() -> None:
    """The owner's connection closes (its keys are forgotten) while a round expects it; its new
    process registers other keys and shares under them: the old streams, already in the sums,
    come out, and the sum is exact."""
    servers, rnd, router, sharers = keyed_round_opened()
    for s in servers.values():
        s.idle()  # the old process's streams are in the sums
        s.forget(OWNERS[1])
    sharers[OWNERS[1]] = InputSharer(keyed=True)  # the new process
    router.post(OWNERS[1], key_messages(PARAMS, sharers[OWNERS[1]]))
    assert_keyed_round_exact(rnd, router, sharers)


def test_a_sender_of_far_rounds_pushes_out_only_its_own_early_messages() -> None:
    """A server (or owner) that sends messages for far-off rounds used to push every player's
    early messages for the next round out of the bounded wait; now each sender's window is its
    own, so the next round's shares still wait and are summed when it opens."""
    servers, rnd, router, xs = setup(round_no=3)
    router.post(MO, rnd.open())
    send_inputs(router, xs, round_no=3)
    router.run()
    s0 = servers["server-0"]
    early = {o: input_shares(PARAMS, 4, x) for o, x in xs.items()}
    for owner, sends in early.items():
        s0.feed(owner, dataclasses.replace(sends[0].msg, servers=PARAMS.servers))
    flood = m.InputsHeld(session=PARAMS.session, round_no=0, owners=OWNERS)
    for r in range(10**6, 10**6 + 5):
        s0.feed("server-1", dataclasses.replace(flood, round_no=r))
    assert 4 in s0.waiting.rounds and len(s0.waiting.rounds) == 3
    assert len([r for r in s0.waiting.rounds if r >= 10**6]) == 2
