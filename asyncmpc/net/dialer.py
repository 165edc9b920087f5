"""Reaching the players a node dials, with back-off (asyncio only here and in runtime).

One retry loop serves both uses: at start-up a role reaches its peers within a deadline
(``reach`` with a timeout: PeerLost when it passes, and at once when we refuse the peer's
certificate, since retrying will not fix it), and for as long as the node runs it keeps them
(``keep``: whenever a connection closes, dial again, without end, logging once per outage).
A TLS failure is told as what to fix (``tls_failure``), at start-up and while running.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING

from asyncmpc.config import Player
from asyncmpc.errors import PeerLost, RemoteProtocolError, SettingsMismatch, TlsRefused

if TYPE_CHECKING:
    from asyncmpc.net.runtime import Node

__all__ = ["FIRST_DELAY", "MAX_DELAY", "Dialer", "tls_failure"]

FIRST_DELAY = 0.02
MAX_DELAY = 2.0
"""The longest pause between attempts to reach a player that is down."""


class Dialer:
    """Dials on behalf of ``node`` (which does each attempt: ``Node.dial_once``)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.tls_failures: dict[str, str] = {}
        """Per player whose last attempt failed in TLS: what to tell a person (``tls_failure``)."""

    async def reach(self, peer: Player, timeout: float | None) -> None:
        """Dial ``peer`` until connected, doubling the pause between attempts up to
        ``MAX_DELAY``. With a ``timeout``: PeerLost once it passes, and at once on a TLS
        error. Without: until it works (or the node closes)."""
        node = self.node
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        attempt = node.config.protocol.handshake_timeout
        delay, logged = FIRST_DELAY, False
        while not node.closing and peer.name not in node.shunned:
            budget = attempt if deadline is None else max(0.01, deadline - loop.time())
            try:
                await node.dial_once(peer, budget)
                self.tls_failures.pop(peer.name, None)
                return
            except (ssl.SSLError, TlsRefused) as exc:
                self.tls_failures[peer.name] = error = tls_failure(node.name, peer, exc)
                if deadline is not None and isinstance(exc, ssl.SSLError):
                    raise PeerLost(error) from exc  # a certificate we refuse will not fix itself
            except SettingsMismatch as exc:  # another hosts.toml will not fix itself either
                self.tls_failures[peer.name] = error = f"{node.name}: {exc}"
                if deadline is not None:
                    raise PeerLost(error) from exc
            except (OSError, TimeoutError, PeerLost, RemoteProtocolError) as exc:
                self.tls_failures.pop(peer.name, None)
                error = str(exc) or type(exc).__name__
            if deadline is not None and loop.time() + delay >= deadline:
                where = f"{peer.name} at {peer.host}:{peer.port}"
                lost = f"{node.name}: could not reach {where} within {timeout:g}s: {error}"
                raise PeerLost(self.tls_failures.get(peer.name, lost))
            if deadline is None and not logged:
                logged = True
                if peer.name in self.tls_failures:
                    node.log.warning("%s; retrying", error)
                else:
                    node.log.info("cannot reach %s at %s:%s yet (%s); retrying", peer.name, peer.host, peer.port, error)
            await asyncio.sleep(delay)  # back-off between attempts to reach a peer that is starting
            delay = min(delay * 2, MAX_DELAY)

    async def keep(self, peer: Player) -> None:
        """Stay connected to ``peer``: dial it again whenever its connection closes."""
        node = self.node
        while not node.closing and peer.name not in node.shunned:
            if peer.name in node.peers:
                await node.wait_gone(peer.name)
                continue
            await self.reach(peer, None)


def tls_failure(me: str, peer: Player, exc: ssl.SSLError | TlsRefused) -> str:
    """One line that says which certificate is wrong and what to do about it (``me`` dialled
    ``peer``): for the dialler's logs and errors, and for ``asyncmpc check --connect``."""
    where = f"{me}: TLS with {peer.name} at {peer.host}:{peer.port} failed"
    certs = (
        "every player needs the one deployment CA's ca.pem and a certificate for its own name signed by "
        "that CA (`asyncmpc certs`, or `certs request` and `certs sign`)"
    )
    if isinstance(exc, TlsRefused):
        return (
            f"{where}: {peer.name} closed the connection after the handshake (it does not accept "
            f"{me}'s certificate, or it was stopping: its log says which); {certs}"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code == _HOSTNAME_MISMATCH:
            return f"{where}: its certificate does not name {peer.name} (is it another player's?); {certs}"
        reason = exc.verify_message or str(exc)
        return f"{where}: its certificate is not signed by this deployment's CA ({reason}); {certs}"
    if "UNKNOWN_CA" in str(exc) or "BAD_CERTIFICATE" in str(exc) or "CERTIFICATE" in (exc.reason or ""):
        return f"{where}: {peer.name} does not accept {me}'s certificate ({exc.reason}); {certs}"
    return f"{where}: {exc.reason or exc}"


_HOSTNAME_MISMATCH = 62
"""OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH."""
