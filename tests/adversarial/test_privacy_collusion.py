"""Under [privacy] the guarantee holds against the model owner with one compute server's help
(SECURITY.md, "Differential privacy"). Two ways that coalition could open what the noise
should hide, each driven against the real server state machines, with server-2 the colluder:

- two honest servers release one round over different contributor sets: both hold the
  victim's component 1 with the same noise, so the difference of their answers is that
  component without noise, and the colluder holds the other two;
- one round opened at each honest server as a two-server round with the colluder: each deals
  the whole variance and releases, so every owner's one answer comes out twice under
  independent noise (a noise multiplier of z / sqrt(2) for one release counted).

Every honest server of a round must agree on the round's servers and contributors before it
releases anything, and an owner's shares name the servers it was told."""

from __future__ import annotations

import os

import numpy as np

from asyncmpc.learning.privacy.noise import NoiseSource
from asyncmpc.protocol import ServerProtocol, input_shares
from asyncmpc.protocol.events import Action, Send
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message
from tests.protocol.harness import MO, OWNERS, PRIVATE_CFG, PRIVATE_PARAMS, Recorded

SERVERS = tuple(p.name for p in PRIVATE_CFG.servers)
SESSION = PRIVATE_PARAMS.session
D = 31


class Net:
    """Delivers the servers' messages through the codec; keeps what reaches the model owner."""

    def __init__(self, servers: dict[str, ServerProtocol]) -> None:
        self.servers = servers
        self.queue: list[tuple[str, Action]] = []
        self.to_mo: list[tuple[str, m.Message]] = []

    def post(self, sender: str, to: str, msg: m.Message) -> None:
        self.queue.append((sender, Send(to, msg)))

    def run(self) -> None:
        while self.queue:
            sender, act = self.queue.pop(0)
            if not isinstance(act, Send):
                continue
            msg = decode_message(encode_message(act.msg))
            if act.to in self.servers:
                self.queue += [(act.to, a) for a in self.servers[act.to].feed(sender, msg)]
            elif act.to == MO:
                self.to_mo.append((sender, msg))

    def results(self) -> dict[str, m.ResultShare]:
        return {s: msg for s, msg in self.to_mo if isinstance(msg, m.ResultShare)}


def inputs(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {o: rng.integers(-(10**9), 10**9, size=D) for o in OWNERS}


def test_two_honest_servers_never_release_one_round_over_different_sets() -> None:
    servers = {s: ServerProtocol(PRIVATE_PARAMS, s, noise=NoiseSource(PRIVATE_CFG)) for s in SERVERS}
    net = Net(servers)
    for s in SERVERS:  # no one-time key: every server reports Holding
        net.post(MO, s, m.OpenRound(session=SESSION, round_no=1, owners=OWNERS, shape=(D,)))
    net.run()
    for owner, x in inputs().items():
        net.queue += [(owner, send) for send in input_shares(PRIVATE_PARAMS, 1, x)]
    net.run()
    victim, rest = OWNERS[0], OWNERS[1:]
    key = os.urandom(32)
    net.post(MO, SERVERS[0], m.Aggregate(session=SESSION, round_no=1, contributors=rest, mac_key=b"", full=True))
    net.post(MO, SERVERS[1], m.Aggregate(session=SESSION, round_no=1, contributors=OWNERS, mac_key=key))
    net.post(MO, SERVERS[2], m.Aggregate(session=SESSION, round_no=1, contributors=OWNERS, mac_key=key))
    net.run()
    released = net.results()
    assert not (SERVERS[0] in released and SERVERS[1] in released), f"{victim}'s component 1 opened without noise"


def test_an_owners_one_answer_is_not_released_twice_by_two_two_server_rounds() -> None:
    draws = {s: Recorded(i) for i, s in enumerate(SERVERS)}
    servers = {s: ServerProtocol(PRIVATE_PARAMS, s, noise=draws[s]) for s in SERVERS}
    net = Net(servers)
    named = {SERVERS[0]: (SERVERS[0], SERVERS[2]), SERVERS[1]: (SERVERS[1], SERVERS[2]), SERVERS[2]: SERVERS}
    for s in SERVERS:
        net.post(MO, s, m.OpenRound(session=SESSION, round_no=1, owners=OWNERS, shape=(D,), servers=named[s]))
    net.run()
    for owner, x in inputs().items():  # the owners were told all three servers
        net.queue += [(owner, send) for send in input_shares(PRIVATE_PARAMS, 1, x)]
    net.run()
    for s in SERVERS[:2]:
        net.post(MO, s, m.Aggregate(session=SESSION, round_no=1, contributors=OWNERS, mac_key=b"", full=True))
    net.run()
    released = net.results()
    assert not (SERVERS[0] in released and SERVERS[1] in released), "one answer released under two noises"
