"""The in-memory harness of the protocol tests: real server and model-owner state machines
wired by a router that delivers their messages through the codec, in an order a test chooses,
with a fake clock for the round's deadlines. No sockets, no event loop."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

import numpy as np

from asyncmpc.config import Config, parse_config
from asyncmpc.protocol import AggregationRound, ServerProtocol, input_shares
from asyncmpc.protocol.events import Action, Drop, Send
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message
from tests.helpers import hosts_toml

CFG: Config = parse_config(hosts_toml(4, ports=[9000, 9001, 9002, 9003]), "test.toml")
PARAMS = Params.of(CFG)
MO = "model-owner"
OWNERS = tuple(p.name for p in CFG.data_owners)
Envelope = tuple[str, Action]


class Router:
    """Delivers (sender, Send) pairs through the codec, in an order a test may shuffle."""

    def __init__(self, rnd: AggregationRound, servers: dict[str, ServerProtocol]) -> None:
        self.rnd = rnd
        self.servers = servers
        self.told = tuple(rnd.live)
        """The servers the owners were told, as the round opened."""
        self.queue: list[Envelope] = []
        self.dropped: list[Drop] = []
        """Players a server blamed for a message that waited for its round."""
        self.writable = True
        """Decode from a writable buffer, as the runtime does for large frames (a server may
        then keep a received vector as its sum); small frames arrive read-only."""

    def post(self, sender: str, actions: Sequence[Action]) -> None:
        """Queue ``sender``'s actions. An owner's ``InputShare`` names the round's servers, as a
        data owner names the servers its request named."""
        for a in actions:
            if isinstance(a, Send) and isinstance(a.msg, m.InputShare) and not a.msg.servers:
                a = Send(a.to, dataclasses.replace(a.msg, servers=self.told))
            self.queue.append((sender, a))

    def run(
        self,
        pick: Callable[[list[Envelope]], int] = lambda q: 0,
        tamper: Callable[[str, m.Message], m.Message] = lambda s, msg: msg,
        idle: Callable[[], bool] = lambda: False,
        hold: Callable[[Envelope], bool] = lambda e: False,
    ) -> list[Envelope]:
        """Deliver everything but what ``hold`` keeps back (returned); after a delivery to a
        server, call its ``idle`` if ``idle()``."""
        held: list[Envelope] = []
        while self.queue:
            envelope = self.queue.pop(pick(self.queue))
            if hold(envelope):
                held.append(envelope)
                continue
            sender, action = envelope
            if isinstance(action, Drop):
                self.dropped.append(action)
                continue
            body = encode_message(action.msg)
            msg = tamper(sender, decode_message(memoryview(bytearray(body)) if self.writable else body))
            if action.to in self.servers:
                self.post(action.to, self.servers[action.to].feed(sender, msg))
                if idle():
                    self.servers[action.to].idle()
            elif action.to == MO:
                self.post(MO, self.rnd.feed(sender, msg))
        return held


def setup(round_no: int = 1, owners: tuple[str, ...] = OWNERS, shape: tuple[int, ...] = (50,)):  # type: ignore[no-untyped-def]
    servers = {p.name: ServerProtocol(PARAMS, p.name) for p in CFG.servers}
    rnd = AggregationRound(PARAMS, round_no, owners, shape)
    router = Router(rnd, servers)
    xs = {o: np.frombuffer(os.urandom(8 * int(np.prod(shape))), dtype=np.int64).reshape(shape) for o in owners}
    return servers, rnd, router, xs


def send_inputs(router: Router, xs: dict[str, np.ndarray], round_no: int = 1) -> None:
    for owner, x in xs.items():
        router.post(owner, input_shares(PARAMS, round_no, x))


PRIVACY = "\n[privacy]\nnoise_multiplier = 1.0\nclip = 1.0\nexamples = 400\n"
PRIVATE_CFG: Config = parse_config(
    hosts_toml(4, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"') + PRIVACY, "test.toml"
)
SERVERS = tuple(p.name for p in CFG.servers)
PRIVATE_PARAMS = Params.of(PRIVATE_CFG)


class Recorded:
    """A noise draw that remembers what it drew (a test's view of one server's secret)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.drawn: list[np.ndarray] = []
        self.dealers: list[int] = []

    def __call__(self, dealers: int, shape: tuple[int, ...]) -> np.ndarray:
        self.dealers.append(dealers)
        self.drawn.append(self.rng.integers(-(10**6), 10**6, size=shape))
        return self.drawn[-1]
