"""Deployments run by separate organisations: each host makes its own key and signing request,
the CA host signs, no private key leaves its host; ``asyncmpc certs`` and ``check`` as a person
runs them, then every player as a process."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import ALL, ROOT, RUN_ROLE, Players, hosts_toml, one_line

pytestmark = [pytest.mark.integration, pytest.mark.process]

ORGS = {
    "org-a": ["model-owner", "server-0"],
    "org-b": ["server-1", "data-owner-0"],
    "org-c": ["server-2", "data-owner-1"],
}


def asyncmpc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", "import sys; from asyncmpc.cli import main; sys.exit(main())", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_certs_never_overwrites_and_adds_a_new_player_with_the_kept_ca(tmp_path: Path) -> None:
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(2, tls=True))
    ok(asyncmpc("certs", str(config)))
    certs = tmp_path / "certs"
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in certs.iterdir()}
    again = asyncmpc("certs", str(config))
    assert again.returncode == 2
    assert one_line(again) == (
        f"asyncmpc: certs: {certs}: the CA and every player's files are there already; nothing was written "
        "(--force makes a new CA and keys, which cuts off every player holding the old files)"
    )
    assert {p.name: p.read_bytes() for p in certs.iterdir()} == before
    config.write_text(hosts_toml(3, tls=True))  # a third data owner joins
    added = ok(asyncmpc("certs", str(config)))
    assert added.startswith(f"wrote 1 player certificate(s) to {certs}: data-owner-2")
    assert all((certs / name).read_bytes() == data for name, data in before.items())
    ok(asyncmpc("certs", str(config), "--force"))
    assert (certs / "ca.pem").read_bytes() != before["ca.pem"]


def test_check_shows_when_each_certificate_expires_and_warns_within_30_days(tmp_path: Path) -> None:
    config = tmp_path / "hosts.toml"
    config.write_text(hosts_toml(2, tls=True))
    ok(asyncmpc("certs", str(config), "--days", "10"))
    shown = ok(asyncmpc("check", str(config)))
    server = next(line for line in shown.splitlines() if line.startswith("server-1 "))
    assert server.endswith("(10 days) - renew it soon")
    assert "deployment CA: expires" in shown
    (tmp_path / "certs" / "server-2.pem").unlink()
    assert "not on this host" in next(
        line for line in ok(asyncmpc("check", str(config))).splitlines() if "server-2" in line
    )
    bad = asyncmpc("certs", str(config), "--days", "0", "--force")
    assert bad.returncode == 2 and "--days" in one_line(bad)


def organisations(tmp_path: Path, text: str) -> dict[str, Path]:
    """The CA host signs every organisation's requests (only .csr and .pem files travel);
    each organisation's hosts.toml, with its own TLS folder."""
    ca_host = tmp_path / "ca-host"
    ca_host.mkdir()
    (ca_host / "hosts.toml").write_text(text)
    ok(asyncmpc("certs", "ca", cwd=ca_host))
    configs = {}
    for org, names in ORGS.items():
        home = tmp_path / org
        home.mkdir()
        (home / "hosts.toml").write_text(text)
        for name in names:
            ok(asyncmpc("certs", "request", "--name", name, cwd=home))
            request = ca_host / "inbox" / f"{name}.csr"
            request.parent.mkdir(exist_ok=True)
            shutil.copy(home / "certs" / f"{name}.csr", request)  # the request goes to the CA host
            ok(asyncmpc("certs", "sign", str(request), "--out", str(ca_host / "outbox"), cwd=ca_host))
            shutil.copy(ca_host / "outbox" / f"{name}.pem", home / "certs")  # the certificate comes back
        shutil.copy(ca_host / "certs" / "ca.pem", home / "certs")
        configs.update(dict.fromkeys(names, home / "hosts.toml"))
    keys = {p.name for p in ca_host.rglob("*.key")}
    assert keys == {"ca.key"}, "a player's private key reached the CA host"
    return configs


def test_three_organisations_train_with_keys_that_never_left_their_hosts(tmp_path: Path, procs: Players) -> None:
    text = hosts_toml(2, tls=True, training='dataset = "breast_cancer"\nrounds = 20')
    configs = organisations(tmp_path, text)
    for org in ORGS:
        shown = ok(asyncmpc("check", "hosts.toml", cwd=tmp_path / org))
        assert "expires" in shown and "not on this host" in shown
    out = tmp_path / "out"
    for name in ALL[:6]:
        procs.start_role(configs[name], name, *(["--out", str(out)] if name == "model-owner" else []))
    for name in ALL[:6]:
        assert procs.wait(name, 180) == 0, procs.log(name)
    assert "connected to server-0" in procs.log("server-1")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_test_accuracy"] == metrics["sklearn_pooled_accuracy"]


# --- three hosts in network namespaces ------------------------------------------------------

HOSTS = {"org-a": "10.77.0.1", "org-b": "10.77.0.2", "org-c": "10.77.0.3"}
"""Each organisation's host and its address on the namespaces' shared link."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@contextmanager
def network(tag: str) -> Iterator[dict[str, str]]:
    """A namespace per organisation's host (``NS``: its name), linked through a bridge in a
    namespace of its own, each resolving the others' names (``org-a.test`` ..) through its
    own /etc/netns hosts file, as ``ip netns exec`` provides. Everything is removed after."""
    switch = f"am{tag}sw"
    spaces = {org: f"am{tag}{org[-1]}" for org in HOSTS}
    made: list[str] = []
    names = "".join(f"{ip} {org}.test\n" for org, ip in HOSTS.items())
    try:
        for ns in (switch, *spaces.values()):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for org, ns in spaces.items():
            inside, outside = f"v{tag}{org[-1]}", f"w{tag}{org[-1]}"
            _ip("-n", ns, "link", "add", inside, "type", "veth", "peer", "name", outside, "netns", switch)
            _ip("-n", switch, "link", "set", outside, "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{HOSTS[org]}/24", "dev", inside)
            _ip("-n", ns, "link", "set", inside, "up")
            Path(f"/etc/netns/{ns}").mkdir(parents=True, exist_ok=True)
            Path(f"/etc/netns/{ns}/hosts").write_text(f"127.0.0.1 localhost\n{names}")
        yield spaces
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)


def _can_make_namespaces() -> str | None:
    """Why this machine cannot run the namespace test, or None if it can."""
    if sys.platform != "linux" or shutil.which("ip") is None:
        return "needs Linux with iproute2 (ip)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    probe = f"amprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30, check=False)
    return None


def _multi_host_toml() -> str:
    """Three organisations' hosts; server-0 listens on every address and is dialled by name;
    data owners give no host (they only dial out)."""
    text = hosts_toml(2, tls=True, training='dataset = "breast_cancer"\nrounds = 30')
    where = {"model-owner": "org-a", "server-0": "org-a", "server-1": "org-b", "server-2": "org-c"}
    for name, org in where.items():
        table = f"[players.{name}]\n"
        start = text.index(table)
        host_line = text.index('host = "127.0.0.1"', start)
        new = f'host = "{org}.test"\nbind = "0.0.0.0"' if name == "server-0" else f'host = "{HOSTS[org]}"'
        text = text[:host_line] + new + text[host_line + len('host = "127.0.0.1"') :]
    for owner in ("data-owner-0", "data-owner-1"):
        text = text.replace(
            f'[players.{owner}]\nrole = "data-owner"\nhost = "127.0.0.1"', f'[players.{owner}]\nrole = "data-owner"'
        )
    return text


def test_three_organisations_on_three_hosts_train_to_the_pooled_accuracy(tmp_path: Path, procs: Players) -> None:
    why = _can_make_namespaces()
    if why is not None:
        pytest.skip(why)
    text = _multi_host_toml()
    configs = organisations(tmp_path, text)
    org_of = {name: org for org, names in ORGS.items() for name in names}
    out = tmp_path / "out"
    with network(str(os.getpid() % 100000)) as spaces:
        for name in ALL[:6]:
            argv = ["ip", "netns", "exec", spaces[org_of[name]], sys.executable, str(RUN_ROLE)]
            argv += ["--config", str(configs[name]), "--name", name]
            procs.start(name, argv + (["--out", str(out)] if name == "model-owner" else []))
        for name in ALL[:6]:
            assert procs.wait(name, 240) == 0, procs.log(name)
    assert "listening on 0.0.0.0:" in procs.log("server-0")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_test_accuracy"] == metrics["sklearn_pooled_accuracy"]


def test_signing_needs_the_deployment_file_and_a_request_named_after_its_player(tmp_path: Path) -> None:
    ok(asyncmpc("certs", "ca", cwd=tmp_path))
    ok(asyncmpc("certs", "request", "--name", "server-1", cwd=tmp_path))
    alone = asyncmpc("certs", "sign", "certs/server-1.csr", cwd=tmp_path)
    assert alone.returncode == 2
    assert one_line(alone) == (
        "asyncmpc: certs: sign needs the deployment's hosts.toml (here, or --config FILE): a request must name "
        "one of its players"
    )
    (tmp_path / "hosts.toml").write_text(hosts_toml(2, tls=True))
    shutil.copy(tmp_path / "certs" / "server-1.csr", tmp_path / "server-0.csr")
    renamed = asyncmpc("certs", "sign", "server-0.csr", cwd=tmp_path)
    assert renamed.returncode == 2 and "requests a certificate for 'server-1', not 'server-0'" in one_line(renamed)
    assert ok(asyncmpc("certs", "sign", "certs/server-1.csr", cwd=tmp_path)).startswith("wrote certs/server-1.pem")
