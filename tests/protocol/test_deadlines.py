"""The round's deadlines, driven by a fake clock through ``get_timer`` / ``handle_timer``: no
sleeping, no sockets. Times are seconds on the clock the round was opened with."""

from __future__ import annotations

import numpy as np

from asyncmpc.config import parse_config
from asyncmpc.protocol import AggregationRound, ServerProtocol, input_shares
from asyncmpc.protocol.deadlines import ContactClock, Due, IdleClock, RoundClock
from asyncmpc.protocol.events import Drop, Send
from asyncmpc.protocol.outcome import Kind
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m
from tests.helpers import hosts_toml
from tests.protocol.harness import CFG, MO, OWNERS, Router, send_inputs, setup

T = CFG.protocol.round_timeout
S = CFG.protocol.server_timeout
START = 1000.0  # any clock: the round counts from when it opened


def fire(router, rnd, now: float):  # type: ignore[no-untyped-def]
    """The driver's move when the round's timer is due: handle it and deliver what follows."""
    actions = list(rnd.handle_timer(now))
    router.post(MO, actions)
    router.run()
    return actions


def test_inputs_close_at_half_the_round_timeout_and_the_round_sums_what_arrived() -> None:
    _, rnd, router, xs = setup()
    router.post(MO, rnd.open(START))
    send_inputs(router, {o: xs[o] for o in OWNERS[:3]})  # the fourth owner never sends
    router.run()
    assert rnd.get_timer(START + 1) == START + T / 2  # no server answered: nothing else is due
    assert rnd.handle_timer(START + T / 2 - 0.001) == []  # not yet
    actions = fire(router, rnd, START + T / 2)
    assert {type(a.msg) for a in actions if isinstance(a, Send)} == {m.CloseInputs}
    assert rnd.result is not None and rnd.result.kind is Kind.SUMMED
    assert rnd.result.contributors == OWNERS[:3]
    assert np.array_equal(rnd.result.total, sum(xs[o] for o in OWNERS[:3]))
    assert rnd.get_timer(START + T / 2) is None  # done


def test_a_silent_server_is_told_to_close_then_left_out_and_disconnected() -> None:
    _, rnd, router, xs = setup()
    del router.servers["server-2"]  # nothing reaches it, nothing comes back
    router.post(MO, rnd.open(START))
    send_inputs(router, xs)
    router.run()  # servers 0 and 1 answer at once
    heard = START + 0.2
    assert rnd.get_timer(heard) == heard + S  # the third has server_timeout from now
    actions = fire(router, rnd, heard + S)  # first: it may be waiting for a withheld share
    assert [(a.to, type(a.msg)) for a in actions if isinstance(a, Send)] == [("server-2", m.CloseInputs)]
    assert rnd.result is None
    later = heard + S + 0.1
    assert rnd.get_timer(later) == later + S  # and as long again
    actions = fire(router, rnd, later + S)
    assert [a.player for a in actions if isinstance(a, Drop)] == ["server-2"]
    assert "server_timeout" in str(actions[0].error)  # type: ignore[union-attr]
    assert rnd.result is not None and rnd.result.kind is Kind.RECHECK  # two servers: run it again with MACs
    assert rnd.live == ("server-0", "server-1")


def test_at_the_round_timeout_the_servers_awaited_are_left_out() -> None:
    _, rnd, router, xs = setup()
    for s in ("server-1", "server-2"):
        del router.servers[s]
    router.post(MO, rnd.open(START))
    send_inputs(router, xs)
    router.run()  # only server 0 answers: no silence deadline (that needs two answers)
    assert rnd.get_timer(START + 1) == START + T / 2
    fire(router, rnd, START + T / 2)  # inputs close; still one answer
    assert rnd.get_timer(START + T / 2) == START + T
    actions = fire(router, rnd, START + T)
    assert not [a for a in actions if isinstance(a, Drop)]  # late is not silent: no one is disconnected
    assert rnd.result is not None and rnd.result.kind is Kind.FAILED
    assert "fewer than two servers left" in rnd.result.reason


def test_the_last_ask_after_the_round_timeout_has_half_a_timeout_more() -> None:
    config = parse_config(hosts_toml(4, ports=[9000, 9001, 9002, 9003], protocol="server_timeout = 1000.0"))
    servers = {p.name: ServerProtocol(Params.of(config), p.name) for p in config.servers if p.name != "server-2"}
    rnd = AggregationRound(Params.of(config), 1, OWNERS, (50,))
    router = Router(rnd, servers)
    router.post(MO, rnd.open(START))
    for owner in OWNERS:
        router.post(owner, input_shares(Params.of(config), 1, np.arange(50, dtype=np.int64)))
    router.run()  # servers 0 and 1 answer; server 2 is gone, and its silence outlasts the round
    fire(router, rnd, START + T / 2)  # inputs close at server 2: nothing comes back
    assert rnd.get_timer(START + T / 2) == START + T
    actions = list(rnd.handle_timer(START + T))  # server 2 is left out; servers 0 and 1 are asked in full
    assert {a.to for a in actions if isinstance(a, Send) and isinstance(a.msg, m.Aggregate)} == {"server-0", "server-1"}
    assert rnd.get_timer(START + T) == START + 1.5 * T  # their answers never come
    fire(router, rnd, START + 1.5 * T)
    assert rnd.result is not None and rnd.result.kind is Kind.FAILED
    assert "within 1.5 x round_timeout (waiting on server-0, server-1)" in rnd.result.reason


def test_the_clock_picks_the_earliest_deadline_and_a_new_wait_starts_a_new_silence() -> None:
    clock = RoundClock(round_timeout=10.0, server_timeout=3.0, opened=100.0)
    assert clock.next(100.0, inputs_open=True, silence=None) == (105.0, Due.CLOSE_INPUTS)
    assert clock.next(101.0, inputs_open=True, silence=("ask", 0)) == (104.0, Due.SILENT)
    assert clock.next(102.5, inputs_open=True, silence=("ask", 0)) == (104.0, Due.SILENT)  # the same wait
    assert clock.next(103.0, inputs_open=False, silence=("ask", 1)) == (106.0, Due.SILENT)  # a new one
    assert clock.next(108.0, inputs_open=False, silence=("ask", 2)) == (110.0, Due.LATE)
    clock.late = True
    assert clock.next(108.0, inputs_open=False, silence=None) == (115.0, Due.OVER)


def test_the_idle_clock_counts_from_when_the_model_owner_last_spoke() -> None:
    clock = IdleClock(limit=30.0, heard=100.0)
    assert clock.get_timer() == 130.0 and not clock.expired(129.9) and clock.expired(130.0)
    clock.spoke(125.0)
    assert clock.get_timer() == 155.0 and not clock.expired(130.0)


def test_the_contact_clock_gives_up_only_on_tls_failures_before_any_peer_connected() -> None:
    waiting = ContactClock(limit=30.0, started=100.0)
    assert waiting.get_timer() == 130.0
    assert not waiting.expired(129.0, connected=False, refused=True)  # not yet
    assert not waiting.expired(130.0, connected=False, refused=False)  # peers not up yet: wait on
    assert waiting.get_timer() == 160.0  # and look again a limit later
    assert waiting.expired(160.0, connected=False, refused=True)  # by then only TLS failed
    met = ContactClock(limit=30.0, started=100.0)
    assert not met.expired(130.0, connected=True, refused=True)  # a peer connected: not its certificate
    assert met.get_timer() is None and not met.expired(500.0, connected=False, refused=True)
