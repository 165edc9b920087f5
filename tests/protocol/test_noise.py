"""Noise dealt inside the secure sum ([privacy]), through real server and model-owner state
machines wired by the in-memory router: no sockets."""

from __future__ import annotations

import random

import numpy as np
import pytest
from scipy import stats

from asyncmpc.config import parse_config
from asyncmpc.learning.privacy.noise import NoiseSource
from asyncmpc.protocol import AggregationRound, Send, ServerProtocol
from asyncmpc.protocol.events import Drop
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m
from tests.helpers import hosts_toml
from tests.protocol.harness import MO, OWNERS, PRIVATE_CFG, PRIVATE_PARAMS, Recorded, Router, send_inputs

CFG = PRIVATE_CFG
PARAMS = PRIVATE_PARAMS
SERVERS = tuple(p.name for p in CFG.servers)


def setup(live: tuple[str, ...] = SERVERS, shape: tuple[int, ...] = (40,)):  # type: ignore[no-untyped-def]
    draws = {s: Recorded(i) for i, s in enumerate(SERVERS)}
    servers = {s: ServerProtocol(PARAMS, s, noise=draws[s]) for s in live}
    rnd = AggregationRound(PARAMS, 1, OWNERS, shape, servers=live)
    router = Router(rnd, servers)
    rng = np.random.default_rng(7)
    xs = {o: rng.integers(-(10**9), 10**9, size=shape) for o in OWNERS}
    return servers, draws, rnd, router, xs


def dealt(draws: dict[str, Recorded]) -> np.ndarray:
    return sum(d.drawn[-1] for d in draws.values() if d.drawn)  # type: ignore[return-value]


@pytest.mark.parametrize("seed", range(12))
def test_the_opened_sum_carries_every_servers_noise_once_in_any_order(seed: int) -> None:
    order = random.Random(seed)
    _, draws, rnd, router, xs = setup()
    send_inputs(router, xs)
    router.post(MO, rnd.open())
    router.run(pick=lambda q: order.randrange(len(q)))
    assert rnd.result is not None and rnd.result.cross_checked  # both holders added the same noise
    assert all(d.dealers == [3] for d in draws.values())
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()) + dealt(draws))


@pytest.mark.parametrize("down", range(3))
def test_with_a_server_down_the_two_others_each_deal_their_noise(down: int) -> None:
    live = tuple(s for i, s in enumerate(SERVERS) if i != down)
    _, draws, rnd, router, xs = setup(live)
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None and rnd.result.total is not None
    assert [len(d.drawn) for d in draws.values()] == [int(i != down) for i in range(3)]
    assert all(d.dealers == [2] for s, d in draws.items() if s in live)
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()) + dealt(draws))


def test_what_a_server_receives_of_anothers_noise_is_masked() -> None:
    _servers, draws, rnd, router, xs = setup()
    seen: list[m.NoiseShare] = []

    def watch(sender: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.NoiseShare):
            seen.append(msg)
        return msg

    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run(tamper=watch)
    vectors = [s.part for s in seen if isinstance(s.part, np.ndarray)]
    assert len(seen) == 6 and len(vectors) == 3
    for vec in vectors:  # uniform in the ring, not noise of magnitude 10^6
        assert np.abs(vec.astype(np.float64)).max() > 2.0**60
        assert not any(np.array_equal(vec, d.drawn[0]) for d in draws.values())


def test_the_noisy_sum_is_released_for_one_set_of_contributors_only() -> None:
    servers, _draws, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    assert rnd.result is not None
    fewer = m.Aggregate(session=CFG.session, round_no=1, contributors=OWNERS[:-1], mac_key=b"", full=True)
    again = m.Aggregate(session=CFG.session, round_no=1, contributors=OWNERS, mac_key=b"", full=True)
    for _name, server in servers.items():
        (refusal,) = server.feed(MO, fewer)
        assert isinstance(refusal.msg, m.Reject) and refusal.msg.code is m.Refusal.OTHER_SET
        (answer,) = server.feed(MO, again)  # the same set in full: the same noisy sum
        assert isinstance(answer.msg, m.ResultShare) and answer.msg.b is not None


def test_a_result_waits_for_a_dealers_noise() -> None:
    _servers, draws, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)

    def late(envelope: tuple[str, Send]) -> bool:
        sender, action = envelope
        return sender == SERVERS[1] and isinstance(action.msg, m.NoiseShare)

    router.queue = router.run(hold=late)
    assert router.queue and not rnd.done  # servers 0 and 2 wait for server 1's parts
    router.run()
    assert rnd.result is not None
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()) + dealt(draws))


def test_mac_rounds_are_refused_under_privacy() -> None:
    server = ServerProtocol(PARAMS, SERVERS[0], noise=Recorded(0))
    open_mac = m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=(4,), mac=True, servers=SERVERS)
    (refusal,) = server.feed(MO, open_mac)
    assert isinstance(refusal.msg, m.Reject) and "MAC round" in refusal.msg.reason


def test_a_round_without_its_servers_is_refused_under_privacy() -> None:
    from asyncmpc.errors import RemoteProtocolError

    server = ServerProtocol(PARAMS, SERVERS[0], noise=Recorded(0))
    for servers in ((SERVERS[0],), (SERVERS[1], SERVERS[2]), (SERVERS[0], OWNERS[0]), (SERVERS[0],) * 2):
        msg = m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=(4,), servers=servers)
        with pytest.raises(RemoteProtocolError, match=r"two or three servers, this one among them"):
            server.feed(MO, msg)
    msg = m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=(4,))
    dealt = server.feed(MO, msg)  # no servers named: all three deal
    assert sorted(s.to for s in dealt if isinstance(s, Send)) == [SERVERS[1], SERVERS[2]]


def test_a_server_lost_after_dealing_still_has_its_noise_in_the_sum() -> None:
    """Server 2 deals, then is lost before answering: the other two answer in full, and the
    sum carries all three servers' noise (its parts were in the others' sums)."""
    _, draws, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)

    def from_lost(envelope: tuple[str, Send]) -> bool:
        return envelope[0] == SERVERS[2] and isinstance(envelope[1].msg, m.ResultShare)

    router.queue = router.run(hold=from_lost)
    assert not rnd.done  # two results in, the third held back
    router.queue = []
    router.post(MO, rnd.lose(SERVERS[2]))
    router.run(hold=lambda e: e[1].to == SERVERS[2])
    assert rnd.result is not None and rnd.result.total is not None and rnd.result.servers == SERVERS[:2]
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()) + dealt(draws))


def test_a_server_lost_before_its_noise_came_leaves_the_round_without_a_result() -> None:
    """Server 2 opens the round but none of its noise reaches the others: they hold back their
    results (a sum with less noise than planned is never released) and the round yields nothing."""
    _, _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)

    def from_lost(envelope: tuple[str, Send]) -> bool:
        return envelope[0] == SERVERS[2]

    router.run(hold=from_lost)
    assert not rnd.done
    router.post(MO, rnd.lose(SERVERS[2]))
    router.run(hold=from_lost)
    assert not rnd.done  # servers 0 and 1 still wait for server 2's parts
    router.post(MO, rnd.expire())
    router.run(hold=from_lost)
    router.post(MO, rnd.expire())
    router.run(hold=from_lost)
    assert rnd.result is not None and rnd.result.total is None


@pytest.mark.parametrize(("live", "factor"), [(SERVERS, 1.5), (SERVERS[:2], 2.0), (SERVERS[1:], 2.0)])
def test_zero_inputs_open_to_the_planned_variance_with_two_or_three_servers(
    live: tuple[str, ...], factor: float
) -> None:
    """Real noise: with three servers each deals sigma^2 / 2 (1.5 sigma^2 in all), with two each
    deals sigma^2 (2 sigma^2): either way sigma^2 is left when one server's part is known."""
    from asyncmpc.learning.privacy.plan import plan_for
    from asyncmpc.protocol import input_shares

    shape = (500,)
    sources = {s: NoiseSource(CFG) for s in live}
    servers = {s: ServerProtocol(PARAMS, s, noise=sources[s]) for s in live}
    totals = []
    for round_no in range(1, 31):
        rnd = AggregationRound(PARAMS, round_no, OWNERS, shape, servers=live)
        router = Router(rnd, servers)
        router.post(MO, rnd.open())
        for owner in OWNERS:
            router.post(owner, input_shares(PARAMS, round_no, np.zeros(shape, dtype=np.int64)))
        router.run(hold=lambda e: e[1].to not in live and e[1].to != MO)
        assert rnd.result is not None and rnd.result.total is not None
        totals.append(rnd.result.total.astype(np.float64))
    for src in sources.values():
        src.close()
    values = np.concatenate(totals)
    sigma = plan_for(CFG, shape[0]).sigma
    assert np.all(values == np.round(values)) and abs(values.mean()) < 5 * sigma * np.sqrt(factor / values.size)
    assert abs(values.var() / (factor * sigma * sigma) - 1) < 0.05  # 15,000 draws: standard error 1.2%
    assert stats.normaltest(values).pvalue > 1e-4


def test_a_noise_part_of_the_wrong_kind_or_shape_is_refused_naming_it() -> None:
    from asyncmpc.crypto.rss import Seed
    from asyncmpc.errors import RemoteProtocolError

    server = ServerProtocol(PARAMS, SERVERS[1], noise=Recorded(0))
    server.feed(MO, m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=(4,), servers=SERVERS))
    cases = [
        (SERVERS[0], np.zeros(4, dtype=np.int64), "server 0 owes a seed"),  # the previous server sends a seed
        (SERVERS[2], Seed(bytes(16)), "server 2 owes a vector"),
        (SERVERS[2], np.zeros(5, dtype=np.int64), r"shape \(5,\), expected \(4,\)"),
    ]
    for sender, part, why in cases:
        with pytest.raises(RemoteProtocolError, match=why):
            server.feed(sender, m.NoiseShare(session=CFG.session, round_no=1, part=part))
    plain = ServerProtocol(Params.of(parse_config(hosts_toml(4, ports=[9000, 9001, 9002, 9003]))), SERVERS[1])
    with pytest.raises(RemoteProtocolError, match="without \\[privacy\\]"):
        plain.feed(SERVERS[0], m.NoiseShare(session="test", round_no=1, part=Seed(bytes(16))))


def test_the_same_contributors_in_another_order_get_the_same_noisy_sum() -> None:
    servers, _, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    router.run()
    again = m.Aggregate(session=CFG.session, round_no=1, contributors=OWNERS[::-1], mac_key=b"", full=True)
    for server in servers.values():
        (answer,) = server.feed(MO, again)
        assert isinstance(answer.msg, m.ResultShare)


def test_a_wrong_noise_part_that_came_early_blames_its_dealer_not_the_model_owner() -> None:
    server = ServerProtocol(PARAMS, SERVERS[1], noise=Recorded(0))
    server.feed(SERVERS[0], m.NoiseShare(session=CFG.session, round_no=1, part=np.zeros(4, dtype=np.int64)))
    out = server.feed(MO, m.OpenRound(session=CFG.session, round_no=1, owners=OWNERS, shape=(4,), servers=SERVERS))
    assert {type(s.msg) for s in out if isinstance(s, Send)} == {m.NoiseShare}  # it dealt, and waits
    (drop,) = [a for a in out if isinstance(a, Drop)]
    assert drop.player == SERVERS[0] and "noise part of the wrong kind: server 0 owes a seed" in str(drop.error)


def test_a_server_releases_no_more_rounds_than_the_budget_allows() -> None:
    """A model owner that ignores its ledger gets no more from the honest servers."""
    draws = {s: Recorded(i) for i, s in enumerate(SERVERS)}
    servers = {s: ServerProtocol(PARAMS, s, noise=draws[s], release_limit=2) for s in SERVERS}
    rng = np.random.default_rng(3)
    for round_no in (1, 2, 3):
        rnd = AggregationRound(PARAMS, round_no, OWNERS, (8,))
        router = Router(rnd, servers)
        router.post(MO, rnd.open())
        send_inputs(router, {o: rng.integers(-100, 100, size=8) for o in OWNERS}, round_no)
        router.run()
        assert rnd.result is not None
        if round_no <= 2:
            assert rnd.result.total is not None
        else:
            assert rnd.result.total is None and "budget allows 2 releases" in rnd.result.reason
    assert all(s.releases == 2 for s in servers.values())


def test_noise_parts_lost_before_the_servers_connected_are_sent_again_when_they_do() -> None:
    """A round may open before the servers have reached each other: the parts sent then are
    lost, the round waits, and the greeting of the connection that comes brings them again."""
    servers, draws, rnd, router, xs = setup()
    router.post(MO, rnd.open())
    send_inputs(router, xs)
    lost = router.run(hold=lambda e: isinstance(e[1].msg, m.NoiseShare))
    assert len(lost) == 6 and not rnd.done  # every server waits for the others' parts
    for sender, server in servers.items():  # each connection between two servers opens
        for peer in SERVERS:
            if peer != sender:
                router.post(sender, [Send(peer, msg) for msg in server.greet(peer)])
    router.run()
    assert rnd.result is not None and rnd.result.cross_checked
    np.testing.assert_array_equal(rnd.result.total, sum(xs.values()) + dealt(draws))


@pytest.mark.parametrize("seed", range(4))
def test_in_a_norm_checked_round_the_noise_is_dealt_in_the_field_and_the_sum_is_exact(seed: int) -> None:
    """Under [privacy] with norm_bound the sums are in F_q: every server deals its noise there
    (masked vectors uniform in F_q), and the opened sum is the owners' inputs plus every
    dealer's noise, exactly, whatever the order of delivery."""
    import dataclasses

    from asyncmpc.crypto import goldilocks as gf
    from asyncmpc.crypto.ring import encode
    from asyncmpc.protocol.normshares import norm_shares

    params = dataclasses.replace(PARAMS, norm_bound=4 << PARAMS.frac_bits)
    order = random.Random(seed)
    shape = (40,)
    draws = {s: Recorded(i) for i, s in enumerate(SERVERS)}
    servers = {s: ServerProtocol(params, s, noise=draws[s]) for s in SERVERS}
    rnd = AggregationRound(params, 1, OWNERS, shape, norm=True)
    router = Router(rnd, servers)
    values = {o: np.random.default_rng(i).normal(scale=0.1, size=shape) for i, o in enumerate(OWNERS)}
    seen: list[np.ndarray] = []

    def watch(sender: str, msg: m.Message) -> m.Message:
        if isinstance(msg, m.NoiseShare) and isinstance(msg.part, np.ndarray):
            seen.append(msg.part)
        return msg

    router.post(MO, rnd.open())
    for o, v in values.items():
        router.post(o, norm_shares(params, o, 1, v, nonce=rnd.nonce))
    router.run(pick=lambda q: order.randrange(len(q)), tamper=watch)
    assert rnd.result is not None and rnd.result.cross_checked and rnd.result.contributors == OWNERS
    exact = sum(encode(v, params.frac_bits) for v in values.values())
    np.testing.assert_array_equal(rnd.result.total, exact + dealt(draws))
    assert len(seen) == 3
    for vec in seen:  # field elements, uniform: not noise of magnitude 10^6
        assert (vec.view(np.uint64) < gf.Q).all() and np.abs(gf.centred(vec.view(np.uint64))).max() > 2**60
