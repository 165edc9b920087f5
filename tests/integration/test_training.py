"""Federated training end to end: every player a process started through scripts/run_role.py."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config
from asyncmpc.learning.checkpoint import read_rounds
from asyncmpc.learning.training import ReferenceTrainer, load_sklearn
from asyncmpc.learning.workload import SyntheticOwner
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message
from asyncmpc.wire.framing import FrameDecoder, frame
from tests.helpers import (
    ALL,
    ROOT,
    ForwardingProxy,
    Players,
    finish,
    free_ports,
    hosts_toml,
    run_deployment,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.process]


@pytest.mark.parametrize(
    ("dataset", "rounds", "points"),
    [("breast_cancer", 60, 0.02), ("digits", 60, 0.03)],
)
def test_secure_training_matches_the_reference_and_scikit_learn(
    tmp_path: Path, procs: Players, dataset: str, rounds: int, points: float
) -> None:
    config = write_config(tmp_path, owners=3, tls=True, training=f'dataset = "{dataset}"\nrounds = {rounds}')
    metrics = run_deployment(procs, config)

    assert len(metrics["rounds"]) == rounds
    assert all(len(r["contributors"]) == 3 for r in metrics["rounds"])
    losses = [r["loss"] for r in metrics["rounds"]]
    assert losses[-1] < losses[0]

    reference = ReferenceTrainer(load_config(config)).run()
    w_ref, b_ref = reference.model.impl.split(reference.theta)  # type: ignore[attr-defined]
    with np.load(tmp_path / "out" / "model.npz") as f:
        np.testing.assert_allclose(f["weights"], w_ref, atol=1e-3, rtol=0)
        np.testing.assert_allclose(f["intercept"], b_ref, atol=1e-3, rtol=0)
        np.testing.assert_allclose(f["mean"], reference.mean, rtol=1e-6)
    assert metrics["final_test_accuracy"] >= metrics["sklearn_pooled_accuracy"] - points

    # the saved model works as a scikit-learn estimator on raw features
    split = ReferenceTrainer(load_config(config)).split
    assert split.test is not None
    clf = load_sklearn(tmp_path / "out" / "model.npz")
    predicted = clf.predict(split.test.x)
    truth = split.test.y  # the data set's own labels, 0 .. k-1
    assert np.mean(predicted == truth) == pytest.approx(metrics["final_test_accuracy"])


class ResultTamperer:
    """For a proxy's downstream: changes a server's training results (a component and the tag)."""

    def __init__(self) -> None:
        self.frames = FrameDecoder(1 << 30)
        self.tampered = 0

    def __call__(self, data: bytes) -> bytes:
        out = []
        for body in self.frames.feed(data):
            msg = decode_message(body)
            if isinstance(msg, m.ResultShare) and msg.round_no >= 2:
                self.tampered += 1
                msg = dataclasses.replace(msg, a=msg.a + 1, b_tag=bytes(16))
            out.append(frame(encode_message(msg)))
        return b"".join(out)


def test_a_result_share_tampered_in_transit_is_caught_and_its_server_excluded(tmp_path: Path, procs: Players) -> None:
    """A lying server, simulated by a proxy on plaintext loopback (TLS would stop a proxy): the
    first training round fails its cross-check, its MAC re-run names server-2, which is
    excluded; training ends with the weights of an honest run."""
    ports = free_ports(5)
    rounds = 3
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(3, training=f"rounds = {rounds}", ports=ports[:4]))
    mo_dir = tmp_path / "mo"
    mo_dir.mkdir()
    mo_config = mo_dir / "hosts.toml"  # the model owner reaches server-2 through the proxy
    mo_config.write_text(hosts_toml(3, training=f"rounds = {rounds}", ports=[*ports[:3], ports[4]]))
    tamper = ResultTamperer()
    with ForwardingProxy(ports[4], ports[3], downstream=tamper):
        metrics = run_deployment(procs, config, mo_config=mo_config, expect_failures={"server-2"})
    assert tamper.tampered == 3  # the disputed round, its MAC re-run's early answer and the one in full
    first = metrics["rounds"][0]
    assert first["disputed"] == ["server-2"] and first["mac"] and first["excluded"] == "server-2"
    assert list(metrics["excluded_servers"]) == ["server-2"]
    assert all(r["loss"] is not None for r in metrics["rounds"])
    assert all(r["servers"] == ["server-0", "server-1"] for r in metrics["rounds"][1:])
    with np.load(tmp_path / "out" / "checkpoint.npz") as f:
        theta = ReferenceTrainer(load_config(config)).run().theta
        np.testing.assert_allclose(f["theta"], theta, atol=1e-9, rtol=0)


def test_local_sh_runs_a_deployment_and_writes_its_outputs(tmp_path: Path) -> None:
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(3, training="rounds = 5", tls=True))  # local.sh makes the TLS files
    out = tmp_path / "run"
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "local.sh"), str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "round 5/5" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["rounds"]) == 5 and metrics["final_test_accuracy"] > 0.8
    assert (out / "model.npz").exists() and (out / "logs" / "server-0.log").exists()
    assert "local: traffic per player" in proc.stdout
    for name in ["model-owner", "server-0", "server-1", "server-2", "data-owner-0", "data-owner-1", "data-owner-2"]:
        assert f"  {name}: sent " in proc.stdout

    # again: the checkpoint says every round is done, and the finished run is left as it was;
    # with --fresh, training starts over
    written = {f: (out / f).read_bytes() for f in ("metrics.json", "model.npz")}
    again = local_sh(config, out)
    assert "had finished already; its outputs are left as they were" in again.stdout, again.stdout + again.stderr
    assert {f: (out / f).read_bytes() for f in written} == written
    fresh = local_sh(config, out, "--fresh")
    assert "round 1/5" in fresh.stdout and "round 5/5" in fresh.stdout
    assert "resumed_after" not in json.loads((out / "metrics.json").read_text())


def local_sh(config: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = ["bash", str(ROOT / "scripts" / "local.sh"), str(config), "--out", str(out), *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_local_sh_reports_a_failed_player_and_trains_with_the_rest(tmp_path: Path) -> None:
    rows = "a,label\n" + "".join(f"{i % 7},{i % 2}\n" for i in range(20))
    (tmp_path / "ok.csv").write_text(rows)
    extra = {name: 'csv = "ok.csv"' for name in ["model-owner", "data-owner-0", "data-owner-2"]}
    extra["data-owner-1"] = 'csv = "missing.csv"'
    config = tmp_path / "hosts.toml"
    training = 'dataset = "csv"\nclasses = ["0", "1"]\nrounds = 3'
    config.write_text(hosts_toml(3, training=training, extra=extra, protocol="connect_timeout = 3.0"))
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "local.sh"), str(config), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the model owner's status
    assert "data-owner-1 exited with status 2" in proc.stderr
    assert "missing.csv: cannot read" in proc.stderr and "the other players go on" in proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [r["contributors"] for r in metrics["rounds"]] == [["data-owner-0", "data-owner-2"]] * 3
    leftover = subprocess.run(["pgrep", "-f", str(config)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "players left running"


def test_local_sh_stops_every_player_on_ctrl_c(tmp_path: Path) -> None:
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(3, training="rounds = 100000"))
    out = tmp_path / "run"
    proc = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "local.sh"), str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for training to run
            if "round 3/" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    leftover = subprocess.run(["pgrep", "-f", str(config)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "players left running"


def test_a_data_owner_that_restarts_mid_session_rejoins_and_every_round_stays_exact(
    tmp_path: Path, procs: Players
) -> None:
    """data-owner-1 is killed and started again while rounds run: the model owner stops waiting
    for it, it comes back with new stream keys, and every round's sum is exactly the mean of
    that round's contributors (the model is checked against them)."""
    rounds, lr = 400, 0.1
    training = f'dataset = "synthetic"\nparameters = 5000\nrounds = {rounds}\nlearning_rate = {lr}'
    config = write_config(tmp_path, owners=3, tls=True, training=training)
    out = tmp_path / "out"

    def rounds_done() -> int:
        return len(read_rounds(out))

    for name in ALL:
        procs.start_role(config, name, "--out", str(out))
    wait_until(lambda: rounds_done() >= 20, 60, "20 rounds")
    procs.kill("data-owner-1")
    procs.start_role(config, "data-owner-1", "--out", str(out))
    finish(procs, timeout=180)
    rows = json.loads((out / "metrics.json").read_text())["rounds"]
    assert len(rows) == rounds
    missed = [i for i, r in enumerate(rows) if "data-owner-1" not in r["contributors"]]
    assert missed and missed[0] >= 20, "it was in the first rounds, and missed some after it was killed"
    assert any("data-owner-1" in r["contributors"] for r in rows[missed[-1] + 1 :]), "it came back"
    assert all(r["seconds"] < 20 for r in rows), "no round waited for the dead owner until its deadline"

    cfg = load_config(config)
    gradients = {p.name: SyntheticOwner(cfg, p).gradient for p in cfg.data_owners}
    theta = np.zeros(5000)
    for r in rows:
        if r.get("skipped") is None:
            theta = theta - lr * np.mean([gradients[o] for o in r["contributors"]], axis=0)
    with np.load(out / "model.npz") as f:
        np.testing.assert_allclose(f["theta"], theta, rtol=0, atol=rounds * lr * 2.0**-16)
