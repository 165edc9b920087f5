"""Operational errors as a person meets them: one line naming what is wrong and what to do,
exit status 2, no traceback. Each case runs a real player process."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, RUN_ROLE, Players, free_ports, one_line, run_deployment, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.process]


def run_role(config: Path, name: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", name]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def test_a_port_in_use_names_the_player_the_address_and_what_to_do(tmp_path: Path) -> None:
    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, ports=ports)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports[1]))
        holder.listen()
        result = run_role(config, "server-0")
    assert result.returncode == 2
    assert one_line(result) == (
        f"asyncmpc: server-0: cannot listen on 127.0.0.1:{ports[1]}: the port is in use "
        f"(is server-0 running already? `ss -ltnp 'sport = :{ports[1]}'` shows the process); stop that "
        f"process or change [players.server-0] host and port in {config}"
    )


def test_peers_that_never_come_up_are_named_with_their_addresses_while_waiting_and_at_the_end(
    tmp_path: Path,
) -> None:
    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, ports=ports, protocol="connect_timeout = 2.0\nserver_timeout = 0.5")
    argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", "model-owner", "--out", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 2
    where = ", ".join(f"server-{i} at 127.0.0.1:{ports[1 + i]}" for i in range(3))
    assert one_line(result) == (
        f"asyncmpc: model-owner: could not reach {where} within 2s ([protocol] connect_timeout; needed 2 of 3): "
        "are they running, and can this host reach those addresses?"
    )
    for i in range(3):  # said while it was still waiting, not only at the end
        assert f"cannot reach server-{i} at 127.0.0.1:{ports[1 + i]} yet" in result.stderr


def test_a_swarm_whose_model_owner_never_comes_reports_one_line_not_a_task_group_traceback(tmp_path: Path) -> None:
    protocol = "connect_timeout = 1.0\nserver_timeout = 0.5\nidle_timeout = 2.0"
    config = write_config(tmp_path, owners=2, protocol=protocol)
    argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--swarm"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("asyncmpc: data-owner swarm: data-owner-")
    assert line.endswith(": the model owner was absent for 2s ([protocol] idle_timeout)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{path}: cannot read: No such file or directory"),
        ("a,b,label\n1,x,0\n2,3,1\n", "{path}: line 2, column 'b': 'x' is not a number"),
        ("a,c\n1,0\n2,1\n", "{path}: no column 'label' in the header ['a', 'c']"),
        (
            "a,label\n1,0\n1e300,1\n",
            "{path}: line 3, column 'a': too large for the fixed-point ring: the statistics round sums the squares "
            "of this column's 2 values, which must stay within 1.41e+11 with [protocol] frac_bits = 16 and "
            "max_owners = 1000 (values up to 2.65e+05 in magnitude fit); this is the column's largest value: "
            "scale the column down, or lower frac_bits or max_owners",
        ),
    ],
    ids=["missing", "not-a-number", "no-label-column", "beyond-the-ring"],
)
def test_a_bad_data_file_is_one_line_naming_the_file_and_what_is_wrong(
    tmp_path: Path, content: str | None, message: str
) -> None:
    training = 'dataset = "csv"\nclasses = ["0", "1"]'
    extra = {"data-owner-0": 'csv = "owner.csv"', "data-owner-1": 'csv = "owner.csv"', "model-owner": 'csv = "t.csv"'}
    config = write_config(tmp_path, owners=2, training=training, extra=extra)
    if content is not None:
        (tmp_path / "owner.csv").write_text(content)
    result = run_role(config, "data-owner-0")
    assert result.returncode == 2
    assert one_line(result) == "asyncmpc: data-owner-0: " + message.format(path=tmp_path / "owner.csv")


def test_a_data_owner_whose_file_has_another_feature_count_stops_at_once_and_the_summary_says_it_gave_nothing(
    tmp_path: Path, procs: Players
) -> None:
    files = {"test": "a,b,c,label\n1,2,3,x\n2,1,0,y\n", "data-owner-2": "a,b,label\n1,2,x\n2,1,y\n"}
    for i in range(2):
        files[f"data-owner-{i}"] = "a,b,c,label\n1,2,3,x\n2,1,0,y\n3,0,1,x\n"
    extra = {}
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
        extra["model-owner" if name == "test" else name] = f'csv = "{name}.csv"'
    training = 'dataset = "csv"\nclasses = ["x", "y"]\nrounds = 3'
    config = write_config(tmp_path, owners=3, training=training, extra=extra)  # round_timeout = 60
    metrics = run_deployment(procs, config, expect_failures={"data-owner-2"})
    assert procs.log("data-owner-2").rstrip().splitlines()[-1] == (
        f"asyncmpc: data-owner-2: {tmp_path / 'data-owner-2.csv'}: its columns are not the model owner's "
        "(no column 'c'): the model takes 'a', 'b', 'c'"
    )
    # it told the model owner as soon as it heard the model's columns, and the rounds did not wait for it
    mo = procs.log("model-owner")
    assert "data-owner-2 refused: its columns are not the model owner's\n" in mo
    assert metrics["statistics_contributors"] == ["data-owner-0", "data-owner-1"]
    assert metrics["wall_seconds"] < 60
    assert metrics["contributed_rounds"] == {"data-owner-0": 3, "data-owner-1": 3, "data-owner-2": 0}
    assert "data-owner-2 contributed to no round" in mo
    assert "contributed rounds of the 3 that released a sum: data-owner-2 0; the other 2 all 3" in mo


def test_verbose_shows_the_traceback_too_and_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    import json

    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, ports=ports, protocol="connect_timeout = 1.0\nserver_timeout = 0.5")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", ports[1]))
        holder.listen()
        argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", "server-0", "-v"]
        verbose = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert verbose.returncode == 2
    assert "Traceback" in verbose.stderr and "ListenError" in verbose.stderr
    assert verbose.stderr.rstrip().splitlines()[-1].startswith("asyncmpc: server-0: cannot listen on")
    argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", "model-owner", "--log-format", "json"]
    argv += ["--out", str(tmp_path)]
    logged = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert logged.returncode == 2
    lines = logged.stderr.rstrip().splitlines()
    docs = [json.loads(line) for line in lines[:-1]]  # the last line is the one-line error
    assert docs and all(d["player"] == "model-owner" and d["level"] and d["message"] for d in docs)
    assert any("cannot reach server-0" in d["message"] for d in docs)
    assert lines[-1].startswith("asyncmpc: model-owner: could not reach")


_CERTS = (
    "every player needs the one deployment CA's ca.pem and a certificate for its own name signed by "
    "that CA (`asyncmpc certs`, or `certs request` and `certs sign`)"
)


@pytest.mark.parametrize("player", ["server-0", "model-owner"])
def test_a_player_with_another_cas_files_is_named_by_the_one_that_dials_it(
    tmp_path: Path, procs: Players, player: str
) -> None:
    from asyncmpc.config import load_config
    from asyncmpc.net.pki import make_certs

    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, ports=ports, tls=True, protocol="connect_timeout = 3.0")
    make_certs(load_config(config), tmp_path / "other")  # another deployment's CA and files
    other = tmp_path / "hosts-other.toml"
    other.write_text(config.read_text().replace('dir = "certs"', 'dir = "other"'))
    # server-0 waits longer than the model owner, so that it is there whenever the model owner
    # dials (it would give up after connect_timeout, seeing only TLS fail); TLS fails before the
    # two files' settings are compared
    server = tmp_path / "hosts-server.toml"
    server_text = (other if player == "server-0" else config).read_text()
    server.write_text(server_text.replace("connect_timeout = 3.0", "connect_timeout = 60.0"))
    procs.start_role(server, "server-0")
    wait_until(lambda: "listening on" in procs.log("server-0"), 30, "server-0 to listen")
    argv = [sys.executable, str(RUN_ROLE), "--config", str(config if player == "server-0" else other)]
    argv += ["--name", "model-owner", "--out", str(tmp_path / "out")]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 2
    where = f"asyncmpc: model-owner: TLS with server-0 at 127.0.0.1:{ports[1]} failed: "
    message = "its certificate is not signed by this deployment's CA (certificate signature failure); " + _CERTS
    assert one_line(result) == where + message
    wait_until(lambda: "refused TLS connection from 127.0.0.1" in procs.log("server-0"), 10, "server-0's log")


def test_a_server_whose_peers_all_refuse_its_ca_gives_up_and_the_peer_reports_it_once(
    tmp_path: Path, procs: Players
) -> None:
    from asyncmpc.config import load_config
    from asyncmpc.net.pki import make_certs

    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, ports=ports, tls=True, protocol="connect_timeout = 4.0")
    make_certs(load_config(config), tmp_path / "other")  # server-1 has another deployment's CA and files
    other = tmp_path / "hosts-other.toml"
    other.write_text(config.read_text().replace('dir = "certs"', 'dir = "other"'))
    procs.start_role(config, "server-0")
    wait_until(lambda: "listening on" in procs.log("server-0"), 30, "server-0 to listen")
    procs.start_role(other, "server-1")  # it dials server-0, again and again, and TLS fails
    assert procs.wait("server-1", 60) == 2
    last = procs.log("server-1").rstrip().splitlines()[-1]
    assert last == (
        "asyncmpc: server-1: no player could connect within 4s ([protocol] connect_timeout): TLS with server-0 "
        f"at 127.0.0.1:{ports[1]} failed: its certificate is not signed by this deployment's CA (certificate "
        "signature failure); " + _CERTS
    )
    log = procs.log("server-0")
    assert log.count("WARNING asyncmpc.net.runtime: refused TLS connection from 127.0.0.1") == 1
    assert procs.procs["server-0"].poll() is None  # callers that fail TLS do not make a player give up


def test_a_stranger_that_fails_tls_is_reported_once_and_does_not_stop_a_waiting_server(
    tmp_path: Path, procs: Players
) -> None:
    ports = free_ports(4)
    config = write_config(
        tmp_path, owners=2, ports=ports, tls=True, protocol="connect_timeout = 2.0\nidle_timeout = 8.0"
    )
    procs.start_role(config, "server-0")
    wait_until(lambda: "listening on" in procs.log("server-0"), 30, "server-0 to listen")
    for _ in range(3):  # knocks: a connection closed before the TLS handshake
        socket.create_connection(("127.0.0.1", ports[1]), timeout=5).close()
    assert procs.wait("server-0", 60) == 2
    log = procs.log("server-0")
    assert "no player has connected within 2s, and TLS failed with 1 caller(s), first 127.0.0.1" in log
    assert (
        log.rstrip().splitlines()[-1]
        == "asyncmpc: server-0: the model owner was absent for 8s ([protocol] idle_timeout)"
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("another player's", "names server-1, not server-0 (is it another player's certificate?)"),
        ("another CA's", "is not signed by the deployment CA in"),
    ],
)
def test_a_player_checks_its_own_certificate_at_start(tmp_path: Path, case: str, message: str) -> None:
    from asyncmpc.config import load_config
    from asyncmpc.net.pki import make_certs

    config = write_config(tmp_path, owners=2, tls=True)
    folder = tmp_path / "certs"
    if case == "another CA's":
        make_certs(load_config(config), tmp_path / "other")
        folder = tmp_path / "other"
    source = "server-1" if case == "another player's" else "server-0"
    for ext in ("pem", "key"):
        shutil.copy(folder / f"{source}.{ext}", tmp_path / "certs" / f"server-0.{ext}")
    result = run_role(config, "server-0")
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"asyncmpc: server-0: {config}: [tls] dir: {tmp_path / 'certs' / 'server-0.pem'} ")
    assert message in line


def test_missing_certificate_files_are_one_line_naming_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, owners=2, tls=True)
    (tmp_path / "certs" / "server-1.key").unlink()
    result = run_role(config, "server-1")
    assert result.returncode == 2
    missing = tmp_path / "certs" / "server-1.key"
    assert one_line(result) == (
        f"asyncmpc: server-1: {config}: [tls] dir: {missing} is missing: make the key here with `asyncmpc certs "
        f"request --name server-1 --dir {missing.parent}` and have the CA host sign the request; or, for a "
        "deployment on one host, `asyncmpc certs` makes every file"
    )


def test_a_data_owner_whose_mnist_file_is_truncated_names_it_and_exits_2(tmp_path: Path) -> None:
    from tests.mnist_files import digits, write_idx

    training = 'dataset = "mnist"\ndataset_path = "mnist"'
    config = write_config(tmp_path, owners=2, training=training)
    images = write_idx(tmp_path / "mnist", digits(60, seed=1), digits(20, seed=2))["train-images-idx3-ubyte"]
    images.write_bytes(images.read_bytes()[:-784])
    result = run_role(config, "data-owner-1")
    assert result.returncode == 2
    assert one_line(result) == (
        f"asyncmpc: data-owner-1: {images.resolve()}: truncated: its header gives 60 images of 28x28 pixels "
        "(47056 bytes), the file has 46272"
    )
