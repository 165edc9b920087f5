"""TLS and authorization with real processes: strangers, impostors and rogue players."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.crypto.ring import encode
from asyncmpc.crypto.rss import InputSharer, Seed
from asyncmpc.errors import PeerLost
from asyncmpc.learning.workload import SyntheticOwner
from asyncmpc.net.pki import make_certs
from asyncmpc.net.runtime import Node
from asyncmpc.net.tls import tls_contexts
from asyncmpc.wire import messages as m
from tests.helpers import RUN_ROLE, ForwardingProxy, Players, free_ports, hosts_toml, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.process]


def listening(port: int | None) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port or 0)) == 0


def start_server(procs: Players, config: Path, name: str = "server-0") -> None:
    procs.start_role(config, name)
    port = load_config(config).player(name).port
    wait_until(lambda: listening(port), 30, f"{name} to listen")


def test_a_certificate_from_another_ca_is_refused_and_logged(tmp_path: Path, procs: Players) -> None:
    config = write_config(tmp_path, owners=2, tls=True)
    cfg = load_config(config)
    other = tmp_path / "other-ca"
    make_certs(cfg, other)  # the same player names, signed by a different CA
    # the stranger trusts the deployment's CA, but presents a certificate from its own
    own = tls_contexts(cfg, "data-owner-0")
    stranger = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    stranger.minimum_version = ssl.TLSVersion.TLSv1_3
    stranger.load_verify_locations(cafile=str(tmp_path / "certs" / "ca.pem"))
    stranger.load_cert_chain(str(other / "data-owner-0.pem"), str(other / "data-owner-0.key"))
    start_server(procs, config)

    async def dial() -> None:
        tls = dataclasses.replace(own, client=stranger)
        async with Node(cfg, "data-owner-0", tls=tls) as node:
            await node.connect(["server-0"], timeout=10)

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(dial())
    assert isinstance(info.value.exceptions[0], PeerLost)
    wait_until(lambda: "refused TLS connection from 127.0.0.1" in procs.log("server-0"), 10, "the log line")
    assert "certificate verify failed" in procs.log("server-0")
    assert "connected to data-owner-0" not in procs.log("server-0")


def test_a_player_using_another_players_certificate_is_refused(tmp_path: Path, procs: Players) -> None:
    config = write_config(tmp_path, owners=2, tls=True)
    cfg = load_config(config)
    start_server(procs, config)

    async def dial() -> None:
        # claims data-owner-0 in its Hello, presents data-owner-1's certificate
        async with Node(cfg, "data-owner-0", tls=tls_contexts(cfg, "data-owner-1")) as node:
            await node.connect(["server-0"], timeout=10)

    with pytest.raises(ExceptionGroup) as info:
        asyncio.run(dial())
    assert "claims to be 'data-owner-0' but its certificate names data-owner-1" in str(info.value.exceptions[0])
    wait_until(lambda: "claims to be 'data-owner-0'" in procs.log("server-0"), 10, "the log line")


def run_with_rogue(procs: Players, rogue: str, act) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """A TLS deployment in which the test itself plays ``rogue``; the others are processes."""
    config = write_config(
        procs.log_dir, owners=3, tls=True, protocol="round_timeout = 4.0", training='dataset = "iris"\nrounds = 2'
    )
    cfg = load_config(config)
    out = procs.log_dir / "out"
    names = [n for n in cfg.players if n != rogue]
    done = threading.Event()

    async def play() -> None:
        async with Node(cfg, rogue) as node:
            await node.connect()
            await act(cfg, node)
            await asyncio.to_thread(done.wait, 120)

    thread = threading.Thread(target=lambda: asyncio.run(play()), daemon=True)
    thread.start()
    try:
        for name in names:
            procs.start_role(config, name, "--out", str(out))
        assert procs.wait("model-owner", 120) == 0, procs.log("model-owner")
    finally:
        done.set()
        thread.join(30)
    logs = {n: procs.log(n) for n in names}
    return {"metrics": json.loads((out / "metrics.json").read_text()), "logs": logs}


def test_a_data_owner_sending_a_result_share_is_disconnected_and_the_rounds_complete(procs: Players) -> None:
    async def act(cfg, node: Node) -> None:  # type: ignore[no-untyped-def]
        sender, request = await node.recv(timeout=60)  # the first round has begun
        assert sender == "model-owner" and isinstance(request, m.StatsRequest)
        fake = m.ResultShare(session=cfg.session, round_no=1, contributors=("data-owner-2",), a=np.zeros(3, np.int64))
        await node.send("model-owner", fake)

    run = run_with_rogue(procs, "data-owner-2", act)
    assert "a data-owner may not send 'result_share'" in run["logs"]["model-owner"]
    rounds = run["metrics"]["rounds"]
    assert len(rounds) == 2 and all(r["contributors"] == ["data-owner-0", "data-owner-1"] for r in rounds)
    assert run["metrics"]["final_test_accuracy"] is not None


def test_a_server_opening_a_round_is_disconnected_and_the_rounds_complete(procs: Players) -> None:
    async def act(cfg, node: Node) -> None:  # type: ignore[no-untyped-def]
        await node.wait_for_peers(["server-0", "server-1"], timeout=30)
        rogue = m.OpenRound(session=cfg.session, round_no=99, owners=("data-owner-0",), shape=(3,))
        await node.send("server-0", rogue)

    run = run_with_rogue(procs, "server-2", act)
    assert "a compute-server may not send 'open_round'" in run["logs"]["server-0"]
    rounds = run["metrics"]["rounds"]
    assert len(rounds) == 2 and all(r["loss"] is not None for r in rounds)


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "plaintext-control"])
def test_an_eavesdropper_sees_neither_message_structure_nor_share_values(
    tmp_path: Path, procs: Players, tls: bool
) -> None:
    """data-owner-0 (played here, with known seeds) reaches server-1 through a recording proxy.

    The plaintext run is the control: there the same checks must find what TLS hides.
    """
    ports = free_ports(5)
    training = 'dataset = "synthetic"\nparameters = 2000\nrounds = 1'
    config = write_config(tmp_path, owners=2, tls=tls, training=training, ports=ports[:4])
    owner_dir = tmp_path / "owner"
    owner_dir.mkdir()
    owner_config = owner_dir / "hosts.toml"  # the same deployment, server-1 behind the proxy
    owner_config.write_text(hosts_toml(2, tls=tls, training=training, ports=[ports[0], ports[1], ports[4], ports[3]]))
    if tls:
        shutil.copytree(tmp_path / "certs", owner_dir / "certs")
    owner_cfg = load_config(owner_config)

    counter = [0]

    def known_bytes(n: int) -> bytes:
        counter[0] += 1
        return hashlib.shake_256(f"seed:{counter[0]}".encode()).digest(n)

    # what data-owner-0 will send server-1: its key k1 at start-up, then in round 1
    # x2 = x - PRG(k0, round 1) - PRG(k1, round 1)
    gradient = SyntheticOwner(owner_cfg, owner_cfg.player("data-owner-0")).gradient
    x = encode(gradient, 16, max_terms=1000)
    replay = iter([known_bytes(16) for _ in range(2)])
    counter[0] = 0
    sharer = InputSharer(lambda n: next(replay), keyed=True)
    x2 = sharer.share(x, round_no=1)[1].b
    assert sharer.keys is not None
    s1 = sharer.keys[1]

    from asyncmpc.roles.data_owner import run_data_owner

    with ForwardingProxy(ports[4], ports[2]) as proxy:
        for name in ["server-0", "server-1", "server-2", "model-owner", "data-owner-1"]:
            procs.start_role(config, name, "--out", str(tmp_path / "out"))
        wait_until(lambda: listening(ports[2]), 30, "server-1 to listen")
        asyncio.run(run_data_owner(owner_cfg, "data-owner-0", prepare_ahead=False, random_bytes=known_bytes))
        assert procs.wait("model-owner", 120) == 0, procs.log("model-owner")
    seen = bytes(proxy.seen)
    assert len(seen) > 8 * 2000  # the vector share x2 went through here
    markers = [b"input_share", b"share_keys", b"session", b"round_no", b"kind", b"hello"]
    assert isinstance(s1, Seed)
    found = [mk for mk in markers if mk in seen] + [s1.key] * (s1.key in seen)
    found += [v for v in x2[:50] if v.tobytes() in seen]
    if tls:
        assert seen[:1] == b"\x16"  # a TLS handshake record, not a frame
        assert found == []
    else:
        assert len(found) == len(markers) + 1 + 50  # everything in the clear
    # and the values really were what crossed: the run's sum is right
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["rounds"][0]["contributors"] == ["data-owner-0", "data-owner-1"]


def test_plaintext_with_a_non_loopback_host_fails_at_start_up(tmp_path: Path) -> None:
    text = hosts_toml(2).replace('host = "127.0.0.1"\nport', 'host = "192.0.2.7"\nport', 1)
    config = tmp_path / "hosts.toml"
    config.write_text(text)
    proc = subprocess.run(
        [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", "server-0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "plaintext: allowed only when every player is on loopback" in proc.stderr
    assert "192.0.2.7" in proc.stderr
