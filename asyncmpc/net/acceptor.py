"""The listening side of a node: accepted connections through TLS and ``Hello`` (asyncio only
here, in dialer.py and in runtime.py).

A listener takes at most ``max_handshakes`` connections in their handshake at once (the oldest
goes to make room, so idle strangers cannot keep a peer out), gives each ``handshake_timeout``
seconds, checks the caller is a player that may dial this one, and hands a connection that
passed to ``Node._register``; the dialling side is ``dialer.Dialer``. A refused caller is a
warning, except one that closes before sending a byte (after TLS, when the deployment uses it):
that is a probe (``asyncmpc check --connect``), logged at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING

from asyncmpc.errors import PeerLost, RemoteProtocolError, SettingsMismatch
from asyncmpc.net.peer import Connection, FrameProtocol
from asyncmpc.net.policy import may_dial
from asyncmpc.wire.messages import Hello, Refusal, Reject

if TYPE_CHECKING:
    from asyncmpc.net.runtime import Node

__all__ = ["Acceptor"]


class Acceptor:
    """Accepts connections on behalf of ``node``."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._handshaking: dict[FrameProtocol, None] = {}
        """Accepted connections in their handshake, oldest first."""

    def protocol(self) -> FrameProtocol:
        """A protocol for a connection the listener accepted (the server's factory)."""
        node = self.node
        protocol = node._new_protocol()

        def made(transport: asyncio.BaseTransport) -> None:
            FrameProtocol.connection_made(protocol, transport)
            if node.closing:
                transport.close()
                return
            if len(self._handshaking) >= node.config.protocol.max_handshakes:
                # too many at once: the oldest goes, so idle strangers cannot keep a peer out
                oldest = next(iter(self._handshaking))
                del self._handshaking[oldest]
                if oldest.transport is not None:
                    oldest.transport.abort()
            if node.tls is not None:
                transport.pause_reading()  # type: ignore[attr-defined]  # the TLS layer reads first
            self._handshaking[protocol] = None
            node._spawn(self._on_accept(protocol), "accept")

        protocol.connection_made = made  # type: ignore[method-assign]
        return protocol

    async def _on_accept(self, protocol: FrameProtocol) -> None:
        if protocol not in self._handshaking:
            return  # closed to make room before its turn came
        try:
            async with asyncio.timeout(self.node.config.protocol.handshake_timeout):
                conn = await self._handshake(protocol)
        except TimeoutError:
            self.node.log.info(
                "closed a connection that did not finish its handshake within %gs",
                self.node.config.protocol.handshake_timeout,
            )
            assert protocol.transport is not None
            protocol.transport.close()
            return
        finally:
            self._handshaking.pop(protocol, None)
        if conn is not None:
            await self.node._register(conn)

    async def _handshake(self, protocol: FrameProtocol) -> Connection | None:
        """TLS and ``Hello`` on an accepted connection: the connection, or None if refused."""
        node, config = self.node, self.node.config
        if node.tls is not None and not await self._start_tls(protocol):
            return None
        conn = node._connection(protocol, "?")
        try:
            hello = await conn.read()
            if not isinstance(hello, Hello):
                raise RemoteProtocolError(f"first message must be 'hello', got {hello.KIND!r}")
            if hello.player not in config.players:
                raise RemoteProtocolError(f"unknown player {hello.player!r} (not in {config.path})")
            dialer = config.players[hello.player]
            if not may_dial(config, dialer, node.me):
                raise RemoteProtocolError(f"a {dialer.role} may not connect to a {node.me.role}", peer=hello.player)
            conn.name = hello.player
            node._check_hello(hello, conn)
            await conn.send(node.hello())
        except (RemoteProtocolError, PeerLost) as exc:
            if isinstance(exc, PeerLost) and conn.bytes_received == 0:
                # closed before sending a byte (after TLS, if any): a probe such as `asyncmpc
                # check --connect`, or a health check; it tried nothing, and there is no one to answer
                node.log.debug("a connection from %s closed before its Hello (a probe)", conn.address)
                await conn.close()
                return None
            node.log.warning("refused connection from %s: %s", conn.address, exc)
            code = Refusal.SETTINGS if isinstance(exc, SettingsMismatch) else Refusal.PROTOCOL
            with contextlib.suppress(PeerLost):
                await conn.send(Reject(session=config.session, reason=str(exc), code=code))
            await conn.close()
            return None
        return conn

    async def _start_tls(self, protocol: FrameProtocol) -> bool:
        """The server side of the TLS handshake; a refused peer is logged with the reason."""
        tls = self.node.tls
        assert tls is not None and protocol.transport is not None
        raw = protocol.transport
        peer = raw.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        try:
            secured = await asyncio.get_running_loop().start_tls(
                raw,
                protocol,
                tls.server,
                server_side=True,
                ssl_handshake_timeout=self.node.config.protocol.handshake_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            if protocol not in self._handshaking:
                return False  # closed to make room for a newer handshake
            reason = str(exc) or repr(exc)
            if isinstance(exc, ConnectionError) and not isinstance(exc, ssl.SSLError):
                reason = f"it closed the connection during the handshake ({reason}); it may not trust this server"
            self.node.refused(host, reason)
            raw.close()
            return False
        if secured is None:
            raw.close()
            return False
        self.node.accepted_tls(host)
        FrameProtocol.connection_made(protocol, secured)  # the class's, not the accept hook
        return True
