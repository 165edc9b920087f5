"""Crashes, hangs and restarts of real player processes over TLS: training goes on.

Each test starts every player with scripts/run_role.py, kills or stops some of them by PID
while rounds run, and checks the round log (metrics.json), that training completes, and the
final model. Every process is killed when the test ends, also when it fails (the ``procs``
fixture).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.checkpoint import read_rounds
from asyncmpc.learning.training import ReferenceTrainer
from asyncmpc.learning.workload import SyntheticOwner
from tests.helpers import (
    ALL,
    OWNERS,
    SERVERS,
    ForwardingProxy,
    Players,
    finish,
    free_ports,
    hosts_toml,
    players,
    saved_theta,
    start,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.process]

SERVER_TIMEOUT = 1.5


def deployment(tmp_path: Path, rounds: int, *, extra_training: str = "") -> Path:
    training = f'dataset = "breast_cancer"\nrounds = {rounds}\nbatch_size = 64\n{extra_training}'
    protocol = f"server_timeout = {SERVER_TIMEOUT}\nidle_timeout = 120.0"
    return write_config(tmp_path, owners=3, tls=True, training=training, protocol=protocol)


def start_training(procs: Players, rounds: int, until: int = 20) -> tuple[Path, Path]:
    """Start a TLS deployment of every player, training, in the log folder; return (its file,
    the model owner's output folder) once ``until`` rounds are done."""
    config = deployment(procs.log_dir, rounds)
    out = procs.log_dir / "out"
    start(procs, config, out)
    wait_until(lambda: len(read_rounds(out)) >= until, 120, f"round {until}")
    return config, out


def every_round_done(out: Path, rounds: int) -> list[dict[str, Any]]:
    """The round log, after checking that every round has a result and that no server was
    excluded (these faults are honest: crashes, hangs, cuts, restarts; never proof of a lie)."""
    log = read_rounds(out)
    assert len(log) == rounds and all(r.get("skipped") is None for r in log), "every round has a result"
    metrics = json.loads((out / "metrics.json").read_text())
    assert not metrics["excluded_servers"] and not any(r.get("excluded") for r in log), "no one excluded"
    return log


def assert_reference_weights(out: Path, config: Path) -> None:
    """The final model is the one the plaintext reference trainer computes, rounding aside."""
    theta = ReferenceTrainer(load_config(config)).run().theta
    np.testing.assert_allclose(saved_theta(out), theta, atol=1e-9, rtol=0)


def reference_accuracy(config: Path) -> float:
    trainer = ReferenceTrainer(load_config(config))
    accuracy = trainer.run().accuracy(trainer.split.test)
    assert accuracy is not None
    return accuracy


def test_a_killed_server_costs_one_short_round_and_rejoins_when_restarted(procs: Players) -> None:
    rounds = 500
    config, out = start_training(procs, rounds, until=random.Random().randrange(20, 60))
    procs.kill("server-1")
    died = len(read_rounds(out))
    wait_until(lambda: len(read_rounds(out)) >= died + 3, 60, "three rounds after the kill")
    procs.start_role(config, "server-1", "--out", str(out))
    finish(procs)
    log = every_round_done(out, rounds)
    two = [r for r in log if r["servers"] == ["server-0", "server-2"]]
    assert two and all(not r["cross_checked"] for r in two)
    assert max(r["seconds"] for r in log[died - 1 : died + 2]) < SERVER_TIMEOUT + 2
    back = [r for r in log[log.index(two[-1]) + 1 :] if r["servers"] == SERVERS]
    assert back and all(r["cross_checked"] for r in back), "server-1 rejoined"
    mo_log = procs.log("model-owner")
    assert "server-1 is down" in mo_log and "server-1 is back" in mo_log
    assert_reference_weights(out, config)


def test_a_stopped_server_is_left_out_after_its_deadline_and_taken_back_after_it_resumes(procs: Players) -> None:
    rounds = 500
    config, out = start_training(procs, rounds)
    procs.kill("server-2", signal.SIGSTOP)
    try:
        stopped = len(read_rounds(out))
        wait_until(lambda: len(read_rounds(out)) >= stopped + 10, 60, "rounds without server-2")
    finally:
        procs.kill("server-2", signal.SIGCONT)
    finish(procs)
    log = every_round_done(out, rounds)
    without = [i for i, r in enumerate(log) if r["servers"] == ["server-0", "server-1"]]
    assert without, "rounds went on without server-2"
    assert any(r["servers"] == SERVERS for r in log[without[-1] + 1 :]), "server-2 came back"
    slow = [r["seconds"] for r in log if r["seconds"] > SERVER_TIMEOUT]
    assert len(slow) <= 2, f"only the round in which it stopped waited for it: {slow}"
    assert "silent" in procs.log("model-owner")
    assert_reference_weights(out, config)


def test_with_two_servers_killed_rounds_pause_and_go_on_when_one_returns(procs: Players) -> None:
    rounds = 300
    config, out = start_training(procs, rounds)
    procs.kill("server-1")
    procs.kill("server-2")
    wait_until(lambda: "rounds paused" in procs.log("model-owner"), 30, "the pause")
    paused = len(read_rounds(out))
    procs.start_role(config, "server-2", "--out", str(out))
    finish(procs, ["server-0", "server-2", "model-owner", *OWNERS])
    line = next(x for x in procs.log("model-owner").splitlines() if "rounds paused" in x)
    assert "server-1 since" in line and "server-2 since" in line
    log = read_rounds(out)
    assert len(log) == rounds and len(log) > paused
    assert sum(r.get("skipped") is not None for r in log) <= 1  # at most the round they died in
    assert all(r["servers"] == ["server-0", "server-2"] for r in log[paused + 1 :])
    final = json.loads((out / "metrics.json").read_text())["final_test_accuracy"]
    assert final == pytest.approx(reference_accuracy(config), abs=0.02)


def test_a_killed_model_owner_resumes_and_ends_with_the_weights_of_an_uninterrupted_run(procs: Players) -> None:
    rounds = 400
    config, out = start_training(procs, rounds, until=random.Random().randrange(20, 100))
    procs.kill("model-owner")
    done = read_rounds(out)[-1]["round"]
    others = [n for n in ALL if n != "model-owner"]
    assert all(procs.procs[n].poll() is None for n in others), "nobody else exited"
    procs.start_role(config, "model-owner", "--out", str(out))
    wait_until(lambda: "resuming from" in procs.log("model-owner"), 60, "the resume")
    finish(procs)
    metrics = json.loads((out / "metrics.json").read_text())
    resumed = metrics["resumed_after"][0]
    assert resumed in (done, done - 1)
    assert [r["round"] for r in metrics["rounds"]] == list(range(1, rounds + 1))
    assert all(r.get("skipped") is None and len(r["contributors"]) == 3 for r in metrics["rounds"])
    assert_reference_weights(out, config)


def test_no_mask_stream_is_used_twice_when_every_role_restarts(tmp_path: Path, procs: Players) -> None:
    rounds = 400
    config = deployment(tmp_path, rounds)
    out = tmp_path / "out"
    trace = tmp_path / "masks.txt"
    traced = ["--mask-trace", str(trace)]  # each data owner records the masks it sends

    def attack(name: str) -> list[str] | None:
        return traced if name.startswith("data-owner") else None

    for name in ALL:
        procs.start_role(config, name, "--out", str(out), attack=attack(name))
    back = {
        "data-owner-1": lambda r: "data-owner-1" in r["contributors"],
        "server-1": lambda r: r.get("servers") == SERVERS,
        "model-owner": lambda r: True,
    }
    for name, rejoined in back.items():
        wait_until(lambda: len(read_rounds(out)) >= 30, 120, "round 30")
        procs.kill(name)
        killed_at = len(read_rounds(out))
        procs.start_role(config, name, "--out", str(out), attack=attack(name))
        wait_until(
            lambda rejoined=rejoined, after=killed_at + 1: any(rejoined(r) for r in read_rounds(out)[after:]),  # type: ignore[misc]
            120,
            f"{name} to take part again",
        )
    finish(procs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == list(range(1, rounds + 1))
    uses = [tuple(line.split()[1:]) for line in trace.read_text().splitlines()]
    contributions = sum(len(r["contributors"]) for r in metrics["rounds"])
    assert len(uses) >= 2 * contributions  # two keyed streams mask each contribution
    repeated = [pair for pair, n in Counter(uses).items() if n > 1]
    assert not repeated, f"(key, nonce) pairs used twice: {repeated[:5]}"
    assert metrics["final_test_accuracy"] == pytest.approx(reference_accuracy(config), abs=0.02)
    keys = {(line.split()[0], line.split()[1]) for line in trace.read_text().splitlines()}
    # each owner's first keys, the restarted owner's, and everyone's after the model owner restarted
    assert len(keys) >= 2 * 3 + 2 + 2 * 3


class Flood:
    """Idle connections, garbage, huge length prefixes and byte-a-second trickles, on a thread."""

    def __init__(self, ports: list[int], idle_port: int, idle: int) -> None:
        self.ports, self.idle_port, self.idle = ports, idle_port, idle
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.sockets: list[socket.socket] = []
        self.idle_made = 0
        self.garbage_sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def connect(self, port: int) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            return None
        self.sockets.append(s)
        return s

    def run(self) -> None:
        for _ in range(self.idle):  # held open and silent
            self.idle_made += self.connect(self.idle_port) is not None
        self.ready.set()
        rng = random.Random(1)
        trickles = [s for s in (self.connect(p) for p in self.ports) if s is not None]
        last_trickle = 0.0
        while not self.stop.is_set():
            for port in self.ports:
                s = self.connect(port)
                if s is None:
                    continue
                payload = rng.choice(
                    [
                        os.urandom(rng.randrange(1, 4096)),  # random bytes
                        b"\x00\x00\x10\x00" + os.urandom(100),  # a truncated frame
                        b"\xff\xff\xff\xff",  # a huge length prefix
                    ]
                )
                with contextlib.suppress(OSError):
                    s.sendall(payload)
                    self.garbage_sent += 1
                s.close()
                self.sockets.remove(s)
            if time.monotonic() - last_trickle >= 1.0:  # a byte a second
                last_trickle = time.monotonic()
                for s in trickles:
                    with contextlib.suppress(OSError):
                        s.send(b"\x16")
            self.stop.wait(0.05)

    def __enter__(self) -> Flood:
        self.thread.start()
        assert self.ready.wait(120), "the idle connections were not made"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for s in self.sockets:
            s.close()


def peak_rss(stats: Path) -> int:
    return int(json.loads(stats.read_text())["peak_rss_bytes"])


def test_a_flood_of_idle_and_broken_connections_neither_stops_training_nor_grows_memory(tmp_path: Path) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    rounds = 300
    results = {}
    for mode in ("quiet", "flood"):
        folder = tmp_path / mode
        folder.mkdir()
        config = deployment(folder, rounds)
        cfg = load_config(config)
        ports = [p.port for p in cfg.players.values() if p.port is not None]
        out = folder / "out"
        with players(folder) as procs, contextlib.ExitStack() as stack:
            for name in ALL:
                extra = ["--stats", str(folder / f"{name}.stats.json")] if name.startswith("server") else []
                procs.start_role(config, name, "--out", str(out), *extra)
                if name == "server-2" and mode == "flood":  # servers listen: flood them before training starts
                    wait_until(functools.partial(_listening, ports[1:]), 60, "the servers to listen")
                    flood = stack.enter_context(Flood(ports, cfg.player("server-0").port or 0, idle=2000))
            finish(procs)
        metrics = json.loads((out / "metrics.json").read_text())
        results[mode] = (metrics, max(peak_rss(folder / f"{s}.stats.json") for s in SERVERS))
    assert flood.idle_made == 2000 and flood.garbage_sent > 50
    quiet, flooded = results["quiet"], results["flood"]
    assert len(flooded[0]["rounds"]) == rounds and all(r.get("skipped") is None for r in flooded[0]["rounds"])
    assert flooded[0]["final_test_accuracy"] == pytest.approx(quiet[0]["final_test_accuracy"], abs=0.02)
    assert flooded[1] <= 1.5 * quiet[1], f"server peak RSS {flooded[1] >> 20} MiB against {quiet[1] >> 20} MiB"


def _listening(ports: list[int]) -> bool:
    for port in ports:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
    return True


class CutOnce:
    """For a proxy's downstream: after ``after`` chunks, cut the connection mid-chunk, once."""

    def __init__(self, after: int) -> None:
        self.after = after
        self.chunks = 0
        self.cut = False

    def __call__(self, data: bytes) -> bytes | None:
        self.chunks += 1
        if not self.cut and self.chunks >= self.after and len(data) > 64:
            self.cut = True
            return None
        return data


def test_a_connection_cut_mid_frame_costs_one_re_run_and_nothing_else(tmp_path: Path, procs: Players) -> None:
    """Plaintext (a proxy cannot sit inside TLS): the model owner reaches server-2 through a
    proxy that cuts the connection once, in the middle of a result frame. The round ends on two
    servers, which nothing checks, so it runs again as a MAC round; the model owner dials
    server-2 again, and every sum is exact."""
    ports = free_ports(5)
    rounds, lr, d = 300, 0.1, 5000
    training = f'dataset = "synthetic"\nparameters = {d}\nrounds = {rounds}\nlearning_rate = {lr}'
    protocol = f"server_timeout = {SERVER_TIMEOUT}"
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(3, training=training, protocol=protocol, ports=ports[:4]))
    mo_dir = tmp_path / "mo"
    mo_dir.mkdir()
    mo_config = mo_dir / "hosts.toml"  # the model owner reaches server-2 through the proxy
    mo_config.write_text(hosts_toml(3, training=training, protocol=protocol, ports=[*ports[:3], ports[4]]))
    out = tmp_path / "out"
    cut = CutOnce(after=40)
    with ForwardingProxy(ports[4], ports[3], downstream=cut):
        for name in ALL:
            procs.start_role(mo_config if name == "model-owner" else config, name, "--out", str(out))
        finish(procs)
    assert cut.cut
    log = every_round_done(out, rounds)
    rechecked = [i for i, r in enumerate(log) if r.get("rechecked") == ["server-0", "server-1"]]
    assert rechecked and all(log[i]["mac"] for i in rechecked), "a round ended without server-2 and ran again"
    assert all(r["servers"] == SERVERS and r["cross_checked"] for r in log[rechecked[-1] + 1 :][5:]), "it came back"
    assert all(len(r["contributors"]) == 3 for r in log), "no data owner was left out"
    cfg = load_config(config)
    mean = np.mean([SyntheticOwner(cfg, p).gradient for p in cfg.data_owners], axis=0)
    with np.load(out / "model.npz") as f:
        np.testing.assert_allclose(f["theta"], -lr * rounds * mean, rtol=0, atol=rounds * lr * 2.0**-16)


def test_a_model_owner_restarted_while_a_server_is_down_resumes_with_two(procs: Players) -> None:
    rounds = 300
    config, out = start_training(procs, rounds)
    procs.kill("server-1")
    procs.kill("model-owner")
    procs.start_role(config, "model-owner", "--out", str(out))
    finish(procs, ["server-0", "server-2", "model-owner", *OWNERS])
    log = every_round_done(out, rounds)
    resumed = json.loads((out / "metrics.json").read_text())["resumed_after"][0]
    assert all(r["servers"] == ["server-0", "server-2"] for r in log[resumed:])
    assert "server-1 did not connect; training with two servers" in procs.log("model-owner")
    assert_reference_weights(out, config)
