"""``asyncmpc check``: validate a hosts.toml and show the deployment as a table."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

from asyncmpc.cli.common import add_config, fail

if TYPE_CHECKING:
    import socket
    import ssl

    from asyncmpc.config import Config, Player

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)
    parser.add_argument(
        "--connect",
        action="store_true",
        help="also try, from this host, the address and the TLS certificate of every player --name dials",
    )
    parser.add_argument(
        "--name",
        help="the player this host runs: with --connect its certificate is presented; a compute server's host "
        'needs no data files (dataset = "mnist")',
    )
    parser.add_argument("--timeout", type=float, default=3.0, help="with --connect: seconds per attempt (default: 3)")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError, PluginError

    try:
        config = load_config(args.config)
        _import_plugins(config)
    except (ConfigError, PluginError) as exc:
        return fail("check", exc)
    try:
        certificates = _certificates(config)
    except ConfigError as exc:
        return fail("check", exc)
    rows = [("player", "role", "address", "data", "certificate" if certificates else "")]
    for p in config.players.values():
        address = f"{p.host}:{p.port}" if p.port is not None else f"{p.host or 'no host'} (dials out)"
        address += f" (listens on {p.bind})" if p.bind else ""
        rows.append((p.name, p.role, address, p.csv or "", certificates.get(p.name, "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if "ca" in certificates:
        print(f"deployment CA: {certificates['ca']}")
    pr, tr = config.protocol, config.training
    tls = "off (loopback only)" if pr.plaintext else f"TLS 1.3, certificates in {config.tls_dir}"
    print(f"session {config.session!r}; {tls}; {tr.rounds} rounds on {tr.dataset}; {config.path} is valid")
    try:
        _check_data(config, args.name)
    except ConfigError as exc:
        return fail("check", exc)
    if config.privacy is not None:
        try:
            print(_privacy_line(config))
        except ConfigError as exc:
            return fail("check", exc)
    if not args.connect:
        return 0
    try:
        failed = _connect(config, args.name, args.timeout)
    except ConfigError as exc:
        return fail("check", exc)
    if any(failed.values()):
        how = "; ".join(f"{what}: {', '.join(names)}" for what, names in failed.items() if names)
        return fail("check", ConfigError(f"from this host as {args.name}, {how}"))
    return 0


def _certificates(config: Config) -> dict[str, str]:
    """Each certificate this host has in the [tls] dir (``ca`` for ``ca.pem``): when it
    expires, warned within ``pki.WARN_DAYS``; ConfigError for one that cannot be read."""
    from pathlib import Path

    from asyncmpc.net.pki import read_certificate

    if config.protocol.plaintext or config.tls_dir is None:
        return {}
    folder = Path(config.tls_dir)
    found = {n: folder / f"{n}.pem" for n in ["ca", *config.players] if (folder / f"{n}.pem").is_file()}
    shown = {n: read_certificate(path).expiry() for n, path in found.items()}
    if found and "ca" in found:
        shown.update({n: "not on this host" for n in config.players if n not in found})
    return shown


def _import_plugins(config: Config) -> None:
    """Import the model and data plug-ins the file names (PluginError naming one that fails),
    as every player will at start-up."""
    from asyncmpc.learning.models.base import load_plugin

    t = config.training
    load_plugin(t.model)
    if ":" in t.dataset:
        load_plugin(t.dataset, "data")


def _check_data(config: Config, name: str | None) -> None:
    """With dataset = "mnist", read this host's MNIST files and say what they hold (ConfigError
    naming a file that is wrong); not for a compute server, which holds no data."""
    from asyncmpc.config import Role
    from asyncmpc.learning.mnist import load_mnist

    t = config.training
    if t.dataset != "mnist" or (name is not None and config.player(name).role == Role.COMPUTE_SERVER):
        return
    mnist = load_mnist(t.dataset_path)
    print(
        f"mnist in {t.dataset_path}: {len(mnist.y_train)} training and {len(mnist.y_test)} test images "
        f"of {mnist.x_train.shape[1]} pixels"
    )


def _privacy_line(config: Config) -> str:
    """What [privacy] comes to for the model owner's model: the noise multiplier (calibrated for
    a budget, to the model's size), the proven epsilon at the end of training with the
    Gaussian-equivalent figure beside it, and the rounds the budget allows."""
    from asyncmpc.learning.privacy.plan import plan_for
    from asyncmpc.learning.workload import workload

    p = config.privacy
    assert p is not None
    size = workload(config, config.model_owner.name).size
    plan = plan_for(config, size)  # ConfigError if the budget cannot hold one round
    accountant = plan.accountant()
    rounds = config.training.rounds
    spent = accountant.epsilon(rounds)
    how = f"DP-FTRL trees of {p.epoch_steps} rounds" if p.mechanism == "tree" else f"sampling rate {p.rate:g}"
    line = (
        f"[privacy] per {p.unit}: clip {p.clip:g}, {how}, noise multiplier "
        f"{plan.noise_multiplier:.4f} for {size} parameters; {rounds} rounds spend epsilon {spent:.3f} at delta "
        f"{p.delta:g} (Gaussian-equivalent {accountant.gaussian_epsilon(rounds):.3f})"
    )
    if p.epsilon and spent > p.epsilon:
        line += f"; the budget {p.epsilon:g} stops training after {plan.rounds} rounds"
    return line


def _connect(config: Config, name: str | None, timeout: float) -> dict[str, list[str]]:
    """Try every player ``name`` dials: TCP, then the TLS handshake with ``name``'s certificate,
    and close (no ``Hello``: a running peer sees a connection that closes before its first
    byte, which it logs at DEBUG only). Print a line per peer; return those that failed, by
    how: ``unreachable`` (no TCP connection) and ``refused TLS`` (the handshake failed)."""
    import socket

    from asyncmpc.errors import ConfigError
    from asyncmpc.net.runtime import dial_targets
    from asyncmpc.net.tls import tls_contexts

    if name is None:
        raise ConfigError("--connect needs --name: the player this host runs (whose certificate it presents)")
    me = config.player(name)
    client = None if config.protocol.plaintext else tls_contexts(config, name).client
    failed: dict[str, list[str]] = {"unreachable": [], "refused TLS": []}
    for peer in dial_targets(config, me):
        where = f"{peer.name} at {peer.host}:{peer.port}"
        try:
            sock = socket.create_connection((peer.host, peer.port or 0), timeout=timeout)
        except OSError as exc:
            print(f"{where}: unreachable: {exc.strerror or exc}")
            failed["unreachable"].append(peer.name)
            continue
        with sock:
            if client is None:
                print(f"{where}: reachable (plaintext)")
                continue
            accepted, said = _handshake(client, sock, name, peer, timeout)
        if accepted:
            print(f"{where}: reachable; TLS {said}, its certificate names {peer.name}")
        else:
            print(f"{where}: refused TLS: {said}")
            failed["refused TLS"].append(peer.name)
    return failed


def _handshake(
    client: ssl.SSLContext, sock: socket.socket, name: str, peer: Player, timeout: float
) -> tuple[bool, str]:
    """The TLS handshake with ``peer`` over ``sock``, then a clean close: (True, the TLS
    version) if both sides accepted the other's certificate, else (False, what went wrong, in
    ``tls_failure``'s words)."""
    import ssl

    from asyncmpc.errors import TlsRefused
    from asyncmpc.net.dialer import tls_failure

    try:
        with client.wrap_socket(sock, server_hostname=peer.name) as tls:
            _accepted(tls, min(timeout, 0.5))
            version = str(tls.version())
            with contextlib.suppress(OSError):
                tls.unwrap()  # close_notify: a clean end, not a reset
    except (ssl.SSLError, TlsRefused) as exc:
        line = tls_failure(name, peer, exc)
        return False, line.partition(" failed: ")[2] or line
    except OSError as exc:  # reset or silent in the handshake: not a TLS peer, or it refused us
        return False, f"the connection ended in the handshake ({exc.strerror or exc}): is {peer.name} listening there?"
    return True, version


def _accepted(tls: ssl.SSLSocket, wait: float) -> None:
    """With TLS 1.3 a client finishes its handshake before the server has checked the client's
    certificate; a server that refuses it says so right after. TlsRefused if it does."""
    from asyncmpc.errors import TlsRefused

    tls.settimeout(wait)
    try:
        if tls.recv(1) == b"":
            raise TlsRefused("closed the connection")
    except TimeoutError:
        return  # still open: it waits for our Hello
