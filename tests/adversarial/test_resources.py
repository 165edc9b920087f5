"""One malicious peer against a player's resources, over real loopback sockets: frames it
never finishes, frames larger than its role may send, greetings it never reads. Each test is
one attack and asserts that only the attacker's own connection suffers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

import numpy as np
import pytest

from asyncmpc.config import Config, parse_config
from asyncmpc.config.shared import shared_settings
from asyncmpc.errors import PeerLost
from asyncmpc.net.policy import frame_cap
from asyncmpc.net.runtime import Node
from asyncmpc.roles.compute_server import run_compute_server
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import encode_message
from asyncmpc.wire.framing import frame
from tests.helpers import hosts_toml, loopback_config, within

pytestmark = pytest.mark.adversarial

D = 20_000
"""A round of 20,000 parameters: an owner's share (two vectors) is a large frame."""


def share(cfg: Config, d: int = D) -> m.InputShare:
    x = np.arange(d, dtype=np.int64)
    return m.InputShare(session=cfg.session, round_no=1, shape=(d,), a=x, b=x)


@pytest.mark.parametrize("announced", ["1 GiB", "within its cap"])
def test_a_server_announcing_a_frame_it_never_finishes_stalls_only_its_own_connection(announced: str) -> None:
    """Attack 1: server-2 announces a frame on its link to server-1 and never sends the rest.
    The owners' shares to server-1 must still be read at once (it used to wait for the
    round deadline: every connection shared one budget that the stalled frame held). Above
    its cap the frame is not even taken in; within it (a round of 2.2 million parameters,
    a 17.6 MB frame) it holds only its own connection's budget, and the owner's 35 MB share
    still goes through."""
    cfg = loopback_config(protocol="round_timeout = 60.0")
    d = D if announced == "1 GiB" else 2_200_000

    async def body() -> None:
        async with (
            Node(cfg, "server-1") as victim,
            Node(cfg, "server-2") as liar,
            Node(cfg, "data-owner-0") as owner,
        ):
            victim.expect_round(d)
            await liar.connect(["server-1"])
            await owner.connect(["server-1"])
            await victim.wait_for_peers(["server-2", "data-owner-0"])
            size = 1 << 30 if announced == "1 GiB" else frame_cap(cfg, "server-1", "server-2", d)
            liar.peers["server-1"].transport.write(struct.pack(">I", size) + bytes(1000))  # and no more
            stalled = victim.peers["server-2"].protocol
            while not stalled._mid_frame():  # until the victim has taken the announcement in
                await asyncio.sleep(0.01)
            await owner.send("server-1", share(cfg, d))
            sender, msg = await victim.recv(timeout=5)  # far below the 60 s frame deadline
            assert sender == "data-owner-0" and isinstance(msg, m.InputShare) and msg.shape == (d,)

    within(body)


def test_a_frame_larger_than_any_open_round_waits_for_one_and_fails_without_it() -> None:
    """A data owner's frame of 16 MB to a server that has no round that large: its bytes are
    not taken in (reading paused); when a round that large opens it goes on; an owner that
    sends one for no round is dropped at the frame deadline, naming the cap."""
    cfg = loopback_config(protocol="round_timeout = 1.0")

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as owner:
            await owner.connect(["server-0"])
            await srv.wait_for_peers(["data-owner-0"])
            await owner.send("server-0", share(cfg))  # no round open yet: it waits
            with pytest.raises(TimeoutError):
                await srv.recv(timeout=0.2)
            srv.expect_round(D)  # its round opened
            sender, msg = await srv.recv(timeout=5)
            assert sender == "data-owner-0" and isinstance(msg, m.InputShare)
            big = np.zeros(1 << 20, dtype=np.int64)  # 8 MiB per vector, for no round
            huge = m.InputShare(session=cfg.session, round_no=2, shape=big.shape, a=big, b=big)
            sending = asyncio.ensure_future(owner.send("server-0", huge))  # blocks: the server reads none of it
            sender, gone = await srv.recv(timeout=5)
            with pytest.raises(PeerLost):
                await sending
            assert (sender, gone) == ("data-owner-0", None)
            _, reject = await owner.recv(timeout=5)
            assert isinstance(reject, m.Reject) and "above the" in reject.reason and "may send now" in reject.reason

    within(body)


def test_a_peer_that_reads_nothing_cannot_hold_a_greeting_forever(caplog: pytest.LogCaptureFixture) -> None:
    """Attack 10: a player greets every new connection (keys, noise parts owed); a peer that
    completes the handshake and then reads nothing used to keep that send waiting forever.
    The greeting has the handshake's deadline: the connection is closed, the node serves on."""
    cfg = loopback_config(protocol="handshake_timeout = 1.0")
    big = m.NoiseShare(session=cfg.session, round_no=1, part=np.zeros(8 << 20, dtype=np.int64))  # 64 MiB

    async def body() -> None:
        async with Node(cfg, "server-0", greet=lambda peer: [big] if peer == "data-owner-0" else []) as srv:
            me = cfg.player("server-0")
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (me.host, me.port))
            hello = frame(
                encode_message(m.Hello(session=cfg.session, player="data-owner-0", settings=shared_settings(cfg)))
            )
            await asyncio.get_running_loop().sock_sendall(sock, hello)
            try:
                while not any("while greeting it" in r.getMessage() for r in caplog.records):
                    await asyncio.sleep(0.05)  # until the node gives up on the greeting
                assert "data-owner-0" not in srv.peers
                async with Node(cfg, "data-owner-1") as other:  # and it serves everyone else
                    await other.connect(["server-0"], timeout=5)
            finally:
                sock.close()

    with caplog.at_level(logging.INFO, logger="asyncmpc.net.runtime"):
        within(body)


def test_a_server_that_stops_reading_cannot_freeze_another() -> None:
    """A malicious server-2 connects to server-0 and stops reading. Under [privacy], server-0
    owes it a 16 MB noise part for every round: sending it used to block server-0's whole loop
    for the round deadline, so the model owner found an honest server silent and went on with
    the liar and one other (unchecked under [privacy]). Now the part waits in server-2's own
    queue, and server-0 answers the model owner at once."""
    privacy = "\n[privacy]\nnoise_multiplier = 1.0\nclip = 1.0\nexamples = 400\n"
    cfg = parse_config(
        hosts_toml(3, protocol="round_timeout = 20.0\nserver_timeout = 2.0", training='dataset = "breast_cancer"')
        + privacy,
        "test.toml",
    )
    owners = tuple(p.name for p in cfg.data_owners)
    elements = 2_000_000

    async def body() -> None:
        server = asyncio.create_task(run_compute_server(cfg, "server-0"))
        try:
            async with Node(cfg, "server-2") as liar, Node(cfg, "model-owner") as mo:
                liar.maintain(["server-0"])
                mo.maintain(["server-0"])
                await liar.wait_for_peers(["server-0"])
                await mo.wait_for_peers(["server-0"])
                liar.peers["server-0"].protocol.transport.pause_reading()  # the whole attack
                servers = tuple(p.name for p in cfg.servers)
                opened = m.OpenRound(session=cfg.session, round_no=1, owners=owners, shape=(elements,), servers=servers)
                await mo.send("server-0", opened)
                await mo.send("server-0", m.CloseInputs(session=cfg.session, round_no=1))
                while True:
                    _, msg = await mo.recv(timeout=8)  # far below the 20 s it used to take
                    if isinstance(msg, m.Holding):
                        break
                await mo.send("server-0", m.Finish(session=cfg.session))
                await asyncio.wait_for(server, 10)
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await server

    within(body)
