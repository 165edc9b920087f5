"""Loopback tests of the runtime: handshake, retry, bad peers. Each under a hard timeout."""

from __future__ import annotations

import asyncio
import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import Config, parse_config
from asyncmpc.errors import ConfigError, PeerLost
from asyncmpc.net.runtime import Node
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message
from asyncmpc.wire.framing import frame
from tests.helpers import hosts_toml, loopback_config, within


async def raw_exchange(cfg: Config, payload: bytes) -> list[m.Message]:
    """Send raw bytes to server-0 and return whatever messages come back before it closes."""
    server = cfg.player("server-0")
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(payload)
    await writer.drain()
    got: list[m.Message] = []
    while True:
        head = await reader.read(4)
        if len(head) < 4:
            break
        (n,) = struct.unpack(">I", head)
        got.append(decode_message(await reader.readexactly(n)))
    writer.close()
    return got


def test_handshake_and_a_message_with_an_array() -> None:
    cfg = loopback_config()

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as owner:
            await owner.connect(["server-0"])
            await srv.wait_for_peers(["data-owner-0"])
            x = np.arange(1000, dtype=np.int64)
            await owner.send("server-0", m.InputShare(session=cfg.session, round_no=1, shape=(1000,), a=x, b=x))
            sender, msg = await srv.recv(timeout=5)
            assert sender == "data-owner-0" and isinstance(msg, m.InputShare)
            assert isinstance(msg.a, np.ndarray)
            np.testing.assert_array_equal(msg.a, x)

    within(body)


def test_dialling_retries_until_the_listener_starts() -> None:
    cfg = loopback_config()

    async def body() -> None:
        async with Node(cfg, "data-owner-1") as owner:
            dial = asyncio.create_task(owner.connect(["server-1"]))
            await asyncio.sleep(0.3)  # the server is deliberately late
            assert not dial.done()
            async with Node(cfg, "server-1") as srv:
                await dial
                await srv.wait_for_peers(["data-owner-1"])
                assert "server-1" in owner.peers

    within(body)


def test_unreachable_peer_fails_naming_it() -> None:
    cfg = loopback_config()

    async def body() -> None:
        async with Node(cfg, "data-owner-0") as owner:
            with pytest.raises(ExceptionGroup) as info:
                await owner.connect(["server-2"], timeout=0.5)
            err = info.value.exceptions[0]
            assert isinstance(err, PeerLost) and "could not reach server-2" in str(err)

    within(body)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (frame(encode_message(m.Hello(session="test", player="mallory"))), "unknown player 'mallory'"),
        (frame(encode_message(m.Hello(session="test", player="server-0"))), "a compute-server may not connect"),
        (frame(encode_message(m.Hello(session="other", player="data-owner-0"))), "session 'other'"),
        (frame(encode_message(m.Finish(session="test"))), "first message must be 'hello'"),
        (frame(b"\x00\x00\x00\x08\xc1garbage"), "not a valid msgpack message"),
        (struct.pack(">I", 1 << 31), "above the maximum"),
    ],
)
def test_bad_peers_are_refused_and_the_listener_keeps_serving(payload: bytes, reason: str) -> None:
    cfg = loopback_config(protocol="max_frame_bytes = 1048576")

    async def body() -> None:
        async with Node(cfg, "server-0") as srv:
            got = await raw_exchange(cfg, payload)
            assert len(got) == 1 and isinstance(got[0], m.Reject) and reason in got[0].reason
            assert not srv.peers
            async with Node(cfg, "data-owner-2") as owner:  # a good peer still gets in
                await owner.connect(["server-0"])
                await srv.wait_for_peers(["data-owner-2"])

    within(body)


def test_a_peer_breaking_the_wire_after_the_handshake_is_dropped() -> None:
    cfg = loopback_config()

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as owner:
            await owner.connect(["server-0"])
            await srv.wait_for_peers(["data-owner-0"])
            conn = owner.peers["server-0"]
            conn.transport.write(frame(b"\x00\x00\x00\x0e\x81\xa4kind\xa7unknown" + bytes(6)))
            sender, msg = await srv.recv(timeout=5)
            assert (sender, msg) == ("data-owner-0", None)  # the server closed that connection
            sender, msg = await owner.recv(timeout=5)
            assert isinstance(msg, m.Reject) and "unknown message kind 'unknown'" in msg.reason

    within(body)


def test_plaintext_needs_to_be_asked_for() -> None:
    with pytest.raises(ConfigError, match=r"\[tls\] dir: missing; every connection uses TLS unless"):
        parse_config(hosts_toml(3).replace("plaintext = true", "plaintext = false"), "test.toml")


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    cfg = parse_config(hosts_toml(3, tls=True), str(tmp_path / "hosts.toml"))
    with pytest.raises(ConfigError, match=r"\[tls\] dir: .*ca\.pem is missing: copy the deployment's ca\.pem from"):
        Node(cfg, "server-0")


# ------------------------------------------------------------------ bounds and restarts


def test_a_server_listens_on_its_bind_address_and_is_dialled_at_its_host(tmp_path: Path) -> None:
    from asyncmpc.net.pki import make_certs

    text = hosts_toml(2, tls=True, extra={"server-0": 'bind = "0.0.0.0"'})
    text = text.replace(
        '[players.data-owner-0]\nrole = "data-owner"\nhost = "127.0.0.1"', '[players.data-owner-0]\nrole = "data-owner"'
    )
    cfg = parse_config(text, str(tmp_path / "hosts.toml"))
    assert cfg.player("data-owner-0").host == "" and cfg.player("server-0").listen_host == "0.0.0.0"
    make_certs(cfg, tmp_path / "certs")

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as owner:
            assert srv._server is not None
            assert srv._server.sockets[0].getsockname()[0] == "0.0.0.0"
            await owner.connect(["server-0"])  # dialled at its host, 127.0.0.1
            await srv.wait_for_peers(["data-owner-0"])

    within(body)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1 << 16) == b""
    except ConnectionError:
        return True


def test_a_stranger_that_says_nothing_is_closed_after_the_handshake_deadline() -> None:
    cfg = loopback_config(protocol="handshake_timeout = 0.3")

    async def body() -> None:
        async with Node(cfg, "server-0"):
            server = cfg.player("server-0")
            reader, writer = await asyncio.open_connection(server.host, server.port)
            async with asyncio.timeout(5):
                assert await _closed_by_peer(reader)
            writer.close()

    within(body)


def test_a_caller_that_closes_before_its_first_byte_is_a_probe_logged_at_debug_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = loopback_config()
    server = cfg.player("server-0")

    async def logged(text: str) -> None:
        while text not in caplog.text:
            await asyncio.sleep(0.01)  # the listener's task runs meanwhile; `within` bounds the wait

    async def body() -> None:
        async with Node(cfg, "server-0"):
            _, writer = await asyncio.open_connection(server.host, server.port)
            writer.close()  # what `asyncmpc check --connect` does on a plaintext deployment
            await logged("closed before its Hello (a probe)")
            _, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"\x00\x00")  # half a length prefix, then gone: not a probe
            writer.close()
            await logged("refused connection from")

    with caplog.at_level(logging.DEBUG):
        within(body)
    probes = [r.levelno for r in caplog.records if "(a probe)" in r.getMessage()]
    refused = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert probes == [logging.DEBUG]
    assert [r.getMessage().split(": ", 1)[1] for r in refused] == ["connection closed inside a frame"]


def test_beyond_max_handshakes_the_oldest_gives_way_and_a_player_still_gets_in() -> None:
    cfg = loopback_config(protocol="max_handshakes = 2\nhandshake_timeout = 30.0")

    async def body() -> None:
        async with Node(cfg, "server-0") as srv:
            server = cfg.player("server-0")
            idle = [await asyncio.open_connection(server.host, server.port) for _ in range(3)]
            async with asyncio.timeout(5):
                assert await _closed_by_peer(idle[0][0])  # the oldest made room
            async with Node(cfg, "data-owner-0") as owner:  # and a player gets in past the strangers
                await owner.connect(["server-0"], timeout=10)
                await srv.wait_for_peers(["data-owner-0"])
            for _, writer in idle:
                writer.close()

    within(body)


def test_half_a_frame_is_dropped_after_the_frame_deadline() -> None:
    cfg = loopback_config(protocol="round_timeout = 0.5")

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as owner:
            await owner.connect(["server-0"])
            await srv.wait_for_peers(["data-owner-0"])
            owner.peers["server-0"].transport.write(struct.pack(">I", 1000) + b"\x00" * 10)  # and no more
            sender, msg = await srv.recv(timeout=5)
            assert (sender, msg) == ("data-owner-0", None)
            _, reject = await owner.recv(timeout=5)
            assert isinstance(reject, m.Reject) and "did not arrive whole within 0.5s" in reject.reason

    within(body)


def test_a_restarted_player_replaces_its_old_connection_and_a_kept_one_is_dialled_again() -> None:
    cfg = loopback_config()

    async def body() -> None:
        async with Node(cfg, "server-0") as srv, Node(cfg, "data-owner-0") as first:
            first.maintain(["server-0"])
            await srv.wait_for_peers(["data-owner-0"])
            await first.wait_for_peers(["server-0"])
            old = srv.peers["data-owner-0"]
            async with Node(cfg, "data-owner-0") as second:  # the same player, started again
                await second.connect(["server-0"])
                sender, msg = await srv.recv(timeout=5)
                assert (sender, msg) == ("data-owner-0", None)  # the old connection, reported closed
                assert srv.peers["data-owner-0"] is not old
                x = np.arange(4, dtype=np.int64)
                await second.send("server-0", m.InputShare(session="test", round_no=1, shape=(4,), a=x, b=x))
                sender, msg = await srv.recv(timeout=5)
                assert sender == "data-owner-0" and isinstance(msg, m.InputShare)
            # the first one's keeper dials again once its connection is gone
            assert await first.wait_until(lambda: "server-0" in first.peers, 10)

    within(body)


def test_a_peer_whose_hosts_toml_differs_is_refused_on_both_sides_naming_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """data-owner-0 reads frac_bits = 20 where everyone else reads 16: its shares would be
    weighted 16x. The server refuses it, saying which key differs; the owner's start-up wait
    ends with the same line (not "could not reach")."""
    text = hosts_toml(3)
    server_cfg = parse_config(text, "server.toml")
    owner_cfg = parse_config(text.replace("[protocol]", "[protocol]\nfrac_bits = 20", 1), "owner.toml")
    assert server_cfg.protocol.frac_bits != owner_cfg.protocol.frac_bits

    async def body() -> None:
        async with Node(server_cfg, "server-0") as srv, Node(owner_cfg, "data-owner-0") as owner:
            owner.maintain(["server-0"])
            with pytest.raises(PeerLost, match=r"\[protocol\] frac_bits differs: 16 at server-0, 20 at data-owner-0"):
                await owner.wait_for_most(["server-0"], 1, 2.0, 0.0)  # what a role's start-up waits do
            assert not srv.peers

    with caplog.at_level("WARNING"):
        within(body)
    assert any(
        "[protocol] frac_bits differs: 16 at server-0, 20 at data-owner-0" in r.getMessage() for r in caplog.records
    )
