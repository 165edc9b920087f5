"""A player's network presence: listener, dialler, handshake, inbox, shutdown.

Who dials whom follows DESIGN.md (``net.policy``). ``maintain`` keeps those connections: it
dials in the background and dials again, with back-off, whenever a connection closes, so a
restarted peer is reached again without anyone waiting for it. A listener takes a second
authenticated connection from a player it is connected to as that player's restart: the old
connection is closed (and reported closed) before the new one is used.

Bounds: an accepted connection must finish TLS and ``Hello`` within ``handshake_timeout``, and
at most ``max_handshakes`` may be in their handshake at once (beyond that the oldest is closed), so
idle or slow strangers neither stall a listener nor use up its memory or file descriptors
(the oldest handshake gives way to a new one, so they cannot keep a player out either). Each
connection has its own frame budget and frame cap (``net.policy.frame_cap``: by the sender's
role and the largest round the role reported with ``expect_round``; ``HANDSHAKE_FRAME`` before
``Hello``), so one peer can only hurt its own connection. A frame, once begun, must arrive
whole within ``round_timeout``; greeting a new connection has the handshake's deadline. TCP
keep-alive finds a peer whose machine vanished.
Every connection starts with a ``Hello`` from each side naming its player; the listener checks
the name against hosts.toml and against who may dial it, the dialler checks that the listener
is the player it dialled. TLS plugs in through ``TlsContexts`` (server and client contexts, and
a check that binds the certificate to the name in ``Hello``); without it the config must say
``plaintext = true`` (which it allows on loopback only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from asyncmpc.config import LISTENING_ROLES, Config, Player
from asyncmpc.config.shared import first_difference, shared_settings
from asyncmpc.crypto.signing import public_key_of
from asyncmpc.errors import ConfigError, ListenError, PeerLost, RemoteProtocolError, SettingsMismatch, TlsRefused
from asyncmpc.net.acceptor import Acceptor
from asyncmpc.net.dialer import Dialer
from asyncmpc.net.listen import listen_error
from asyncmpc.net.loop import run
from asyncmpc.net.peer import MAX_QUEUED, BodyBudget, Connection, FrameProtocol
from asyncmpc.net.pki import WARN_DAYS
from asyncmpc.net.policy import HANDSHAKE_FRAME, dial_targets, frame_cap, may_dial
from asyncmpc.net.tls import TlsContexts, tls_contexts
from asyncmpc.net.transport import Event, Greeting
from asyncmpc.protocol.events import check_sender
from asyncmpc.wire.messages import PROTOCOL_VERSION, Hello, Message, Refusal, Reject

__all__ = ["MAX_REFUSED", "Event", "Node", "dial_targets", "may_dial", "run"]  # run: from net.loop, where it lives

log = logging.getLogger(__name__)

LARGE_BODY_BYTES = 32 << 20
"""How many bytes of large frame bodies a connection buffers at once (see ``BodyBudget``); one
body larger than this is still read, alone (within its sender's frame cap)."""


MAX_REFUSED = 256
"""Hosts whose failed TLS handshakes a listener remembers (their first failure is logged as a
warning, repeats at debug level); beyond that, each failure is a warning."""


class Node:
    """One player's endpoint. Use as ``async with Node(...) as node``."""

    def __init__(
        self,
        config: Config,
        name: str,
        *,
        tls: TlsContexts | None = None,
        greet: Greeting | None = None,
    ) -> None:
        self.config = config
        self._greet = greet
        self.largest = 0
        """The largest round (in elements) the role knows of, for frame caps (``expect_round``)."""
        self.me = config.player(name)
        self.name = name
        if tls is None and not config.protocol.plaintext:
            tls = tls_contexts(config, name)
        self.tls = tls
        # (player, message, budget bytes it holds, that budget): a large message keeps its
        # connection's frame budget until the role takes it, so a reader stops when the role falls behind
        self.inbox: asyncio.Queue[tuple[str, Message | None, int, BodyBudget | None]] = asyncio.Queue()
        self.peers: dict[str, Connection] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._peer_changed = asyncio.Condition()
        self._dialer = Dialer(self)
        self._acceptor = Acceptor(self)
        self._closing = False
        self._peer_keys: dict[str, bytes] = {}
        self._refused: dict[str, str] = {}
        """Hosts whose every TLS handshake with this listener failed so far, and why (``refused``)."""
        self.shunned: set[str] = set()
        """Players excluded from the session: never dialled again, their connections refused."""
        self.bytes_sent = 0
        self.bytes_received = 0
        self.log = self.logger(__name__)
        """The network layer's log; a role logs through ``logger(__name__)`` of its module."""

    def logger(self, name: str) -> logging.LoggerAdapter[logging.Logger]:
        """The logger ``name`` (a module's ``__name__``), its records tagged with this player."""
        return logging.LoggerAdapter(logging.getLogger(name), {"player": self.name})

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Listen, if this role listens (on the configured host and port; port 0 in tests)."""
        own = None if self.tls is None else self.tls.own
        if own is not None and own.days_left() < WARN_DAYS:
            self.log.warning("this player's certificate %s %s", own.path, own.expiry())
        if self.me.role in LISTENING_ROLES:
            loop = asyncio.get_running_loop()
            try:
                self._server = await loop.create_server(
                    self._acceptor.protocol,
                    self.me.listen_host,
                    self.me.port,
                    backlog=4096,  # a swarm of owners dials in at once
                )
            except OSError as exc:
                raise ListenError(listen_error(self.config, self.me, exc)) from None
            self.log.info("listening on %s:%s", self.me.listen_host, self.port)

    @property
    def tls_refusals(self) -> Mapping[str, str]:
        """Players this node dialled at their configured address whose TLS failed, each with
        why (only these: anyone can fail a handshake with a listener)."""
        return self._dialer.tls_failures

    @property
    def peer_keys(self) -> Mapping[str, bytes]:
        """Every TLS peer's public key, from the certificate its handshake presented."""
        return self._peer_keys

    @property
    def refused_callers(self) -> Mapping[str, str]:
        """Hosts whose every TLS handshake with this listener failed so far, each with why."""
        return self._refused

    def refused(self, host: str, reason: str) -> None:
        """A TLS handshake from ``host`` failed: logged as a warning the first time for that host
        and reason, at debug level after that (a peer retries every few seconds); at most
        ``MAX_REFUSED`` hosts are remembered."""
        again = self._refused.get(host) == reason
        if again or host in self._refused or len(self._refused) < MAX_REFUSED:
            self._refused[host] = reason
        self.log.log(logging.DEBUG if again else logging.WARNING, "refused TLS connection from %s: %s", host, reason)

    def accepted_tls(self, host: str) -> None:
        self._refused.pop(host, None)

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return self.me.port
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.peers.values()):
            await conn.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------ connecting

    async def connect(self, names: list[str] | None = None, timeout: float | None = None) -> None:
        """Dial ``names`` (default: every player this role dials), retrying until ``timeout``."""
        targets = [self.config.player(n) for n in names] if names is not None else dial_targets(self.config, self.me)
        limit = self.config.protocol.connect_timeout if timeout is None else timeout
        async with asyncio.TaskGroup() as tg:
            for p in targets:
                tg.create_task(self._dialer.reach(p, limit))

    def maintain(self, names: list[str] | None = None) -> None:
        """Stay connected to ``names`` (default: every player this role dials): dial each in the
        background, and again, with back-off, whenever its connection closes."""
        targets = [self.config.player(n) for n in names] if names is not None else dial_targets(self.config, self.me)
        for peer in targets:
            self._spawn(self._dialer.keep(peer), f"keep:{peer.name}")

    async def dial_once(self, peer: Player, timeout: float) -> None:
        """One attempt to connect to ``peer`` and shake hands, within ``timeout`` (for ``Dialer``)."""
        if peer.port is None:
            raise ConfigError(f"{self.config.path}: [players.{peer.name}] has no port to dial")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with asyncio.timeout(timeout):
            _, protocol = await loop.create_connection(
                self._new_protocol,
                peer.host,
                peer.port,
                ssl=self.tls.client if self.tls else None,
                server_hostname=peer.name if self.tls else None,
                ssl_handshake_timeout=max(0.01, deadline - loop.time()) if self.tls else None,
            )
        conn = self._connection(protocol, peer.name)
        try:
            await conn.send(self.hello())
            hello = await conn.read(timeout=max(0.01, deadline - loop.time()))
            if isinstance(hello, Reject):
                refused = SettingsMismatch if hello.code is Refusal.SETTINGS else RemoteProtocolError
                raise refused(f"refused the connection: {hello.reason}", peer=peer.name)
            if not isinstance(hello, Hello) or hello.player != peer.name:
                shown = getattr(hello, "player", hello.KIND)
                raise RemoteProtocolError(f"answered the handshake as {shown!r}", peer=peer.name)
            self._check_hello(hello, conn)
        except PeerLost as exc:
            await conn.close()
            if self.tls is None:
                raise
            raise TlsRefused(str(exc)) from exc
        except BaseException:
            await conn.close()
            raise
        await self._register(conn)

    async def wait_gone(self, name: str) -> None:
        """Wait until ``name`` is not connected (or the node closes)."""
        async with self._peer_changed:
            await self._peer_changed.wait_for(lambda: name not in self.peers or self._closing or name in self.shunned)

    @property
    def closing(self) -> bool:
        return self._closing

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _new_protocol(self) -> FrameProtocol:
        p = self.config.protocol
        budget = BodyBudget(LARGE_BODY_BYTES)
        return FrameProtocol(p.max_frame_bytes, budget, frame_timeout=p.round_timeout, cap=lambda: HANDSHAKE_FRAME)

    def _cap(self, peer: str) -> int:
        return frame_cap(self.config, self.name, peer, self.largest)

    def expect_round(self, elements: int) -> None:
        """A round of ``elements`` elements is open: peers may send frames that large (frames
        that waited for it go on)."""
        if elements <= self.largest:
            return
        self.largest = elements
        for conn in self.peers.values():
            conn.protocol.recheck()

    def _check_hello(self, hello: Hello, conn: Connection) -> None:
        if hello.player in self.shunned:
            raise RemoteProtocolError("excluded from this session", peer=hello.player)
        if hello.session != self.config.session:
            raise RemoteProtocolError(f"session {hello.session!r}, expected {self.config.session!r}", peer=hello.player)
        if hello.version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"protocol version {hello.version}, expected {PROTOCOL_VERSION}", peer=hello.player
            )
        differs = first_difference(self._settings, hello.settings, self.name, hello.player)
        if differs is not None:
            raise SettingsMismatch(f"{differs} (every player's hosts.toml must agree)")
        if self.tls is not None:
            self.tls.verify_peer(conn.extra("peercert"), hello.player)
            ssl_object = conn.extra("ssl_object")
            der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            if der:
                self._peer_keys[hello.player] = public_key_of(der)

    def hello(self) -> Hello:
        """This player's ``Hello``: its name and its shared settings."""
        return Hello(session=self.config.session, player=self.name, settings=self._settings)

    @functools.cached_property
    def _settings(self) -> str:
        return shared_settings(self.config)

    def _connection(self, protocol: FrameProtocol, name: str) -> Connection:
        _keepalive(protocol.transport)
        return Connection(protocol, name=name)

    async def _register(self, conn: Connection) -> None:
        """Greet a connection whose handshake passed and start reading it. A player that was
        connected already has restarted: its old connection is closed and reported first."""
        old = self.peers.pop(conn.name, None)
        if old is not None:
            self.log.info("%s connected again; closing its old connection", conn.name)
            await old.close()
            self._count(old)
            await self.inbox.put((conn.name, None, 0, None))
        conn.protocol.cap = functools.partial(self._cap, conn.name)
        conn.protocol.recheck()
        try:
            async with asyncio.timeout(self.config.protocol.handshake_timeout):
                for msg in self._greet(conn.name) if self._greet else []:
                    await conn.send(msg)
        except (PeerLost, TimeoutError) as exc:
            self.log.info("lost %s while greeting it: %s", conn.name, exc or "it took nothing in time")
            await conn.close()
            return
        if self._closing:
            await conn.close()
            return
        self.peers[conn.name] = conn
        self.log.info("connected to %s", conn.name)
        self._spawn(self._read_loop(conn), f"read:{conn.name}")
        self._spawn(conn.pump(functools.partial(self._stuck, conn)), f"write:{conn.name}")
        async with self._peer_changed:
            self._peer_changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``predicate()`` holds, checked whenever a connection opens or closes;
        False if ``timeout`` seconds pass first."""
        try:
            async with asyncio.timeout(timeout), self._peer_changed:
                await self._peer_changed.wait_for(predicate)
        except TimeoutError:
            return False
        return True

    async def wait_for_most(self, names: list[str], need: int, timeout: float, grace: float) -> list[str]:
        """Wait up to ``timeout`` until ``need`` of ``names`` are connected, then up to ``grace``
        more for the others; return those connected. PeerLost if fewer than ``need`` came."""
        if not await self.wait_until(lambda: sum(n in self.peers for n in names) >= need, timeout):
            down = [self.config.player(n) for n in names if n not in self.peers]
            for p in down:  # a certificate to fix says more than "could not reach"
                if p.name in self._dialer.tls_failures:
                    raise PeerLost(self._dialer.tls_failures[p.name])
            where = ", ".join(f"{p.name} at {p.host}:{p.port}" for p in down)
            raise PeerLost(
                f"{self.name}: could not reach {where} within {timeout:g}s ([protocol] connect_timeout; "
                f"needed {need} of {len(names)}): are they running, and can this host reach those addresses?"
            )
        await self.wait_until(lambda: all(n in self.peers for n in names), grace)
        return [n for n in names if n in self.peers]

    async def wait_for_peers(self, names: list[str], timeout: float | None = None) -> None:
        """Wait until every player in ``names`` is connected (dialled or accepted)."""
        limit = self.config.protocol.connect_timeout if timeout is None else timeout
        if not await self.wait_until(lambda: all(n in self.peers for n in names), limit):
            missing = [n for n in names if n not in self.peers]
            raise PeerLost(f"{self.name}: {', '.join(missing)} did not connect within {limit:g}s")

    # ------------------------------------------------------------ messages

    async def _read_loop(self, conn: Connection) -> None:
        try:
            role = self.config.players[conn.name].role
            while True:
                msg, held = await conn.read_held()
                if conn.leaving:  # dropped: nothing more from it reaches the role
                    conn.protocol.budget.give_back(held)
                    break
                try:
                    # authorization by role, and the session, for every message: see messages.py
                    check_sender(conn.name, role, msg, self.config.session)
                except RemoteProtocolError:
                    conn.protocol.budget.give_back(held)
                    raise
                await self.inbox.put((conn.name, msg, held, conn.protocol.budget))
                # the role owns it now; an idle connection must not keep its last frame alive
                del msg
        except RemoteProtocolError as exc:
            await self.drop(conn.name, exc.with_peer(conn.name))
        except PeerLost as exc:
            self.log.info("%s", exc)
        finally:
            if not conn.leaving:  # a dropped connection is closed by its farewell
                await conn.close()
                self._count(conn)
            if self.peers.get(conn.name) is conn:
                del self.peers[conn.name]
                await self.inbox.put((conn.name, None, 0, None))
                async with self._peer_changed:
                    self._peer_changed.notify_all()

    def post(self, to: str, msg: Message, timeout: float | None) -> None:
        """Queue ``msg`` for ``to`` without waiting (``Connection.pump`` sends it): a peer that
        stops reading holds up only its own messages, and is disconnected once one of them waits
        past ``timeout`` (or too many pile up). A message for a player not connected is dropped
        with a log line; the round's deadlines handle the rest."""
        conn = self.peers.get(to)
        if conn is None:
            self.log.warning("could not send %s: not connected to %s", msg.KIND, to)
            return
        if not conn.post(msg, timeout):
            self._spawn(self._stuck(conn, f"more than {MAX_QUEUED} messages wait for it"), f"stuck:{to}")

    async def _stuck(self, conn: Connection, why: str) -> None:
        if self.peers.get(conn.name) is conn:
            await self.drop(conn.name, RemoteProtocolError(why, peer=conn.name))

    async def send(self, to: str, msg: Message) -> None:
        """Send ``msg`` to the connected player ``to``; PeerLost if it is not connected."""
        conn = self.peers.get(to)
        if conn is None:
            raise PeerLost(f"{self.name}: not connected to {to}")
        await conn.send(msg)

    def quiet(self) -> bool:
        """Whether no event waits to be received."""
        return self.inbox.empty()

    async def recv(self, timeout: float | None = None) -> Event:
        """The next (player, message) event; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            player, msg, held, budget = await self.inbox.get()
        if budget is not None:
            budget.give_back(held)
        return player, msg

    async def shun(self, player: str, reason: str) -> None:
        """Exclude ``player`` for the rest of the session: close its connection, stop dialling
        it, refuse it when it calls."""
        self.shunned.add(player)
        if player in self.peers:
            await self.drop(player, RemoteProtocolError(f"excluded from this session: {reason}", peer=player))
        async with self._peer_changed:
            self._peer_changed.notify_all()

    async def drop(self, player: str, error: Exception) -> None:
        """Tell ``player`` why, and close its connection; the node keeps serving everyone else."""
        self.log.warning("closing connection to %s: %s", player, error)
        conn = self.peers.pop(player, None)
        if conn is None:
            return
        conn.leaving = True
        self._spawn(self._farewell(conn, str(error)), f"drop:{player}")
        await self.inbox.put((player, None, 0, None))
        async with self._peer_changed:
            self._peer_changed.notify_all()  # a dialler keeping this peer dials it again

    async def _farewell(self, conn: Connection, reason: str) -> None:
        """Send a dropped peer its ``Reject``, then close: in the background, and for at most
        ``server_timeout`` (a peer that reads nothing does not get to wait anyone out)."""
        try:
            with contextlib.suppress(PeerLost, TimeoutError):
                async with asyncio.timeout(self.config.protocol.server_timeout):
                    await conn.send(Reject(session=self.config.session, reason=reason))
        finally:  # also when the node closes first
            await conn.close()
            self._count(conn)

    def _count(self, conn: Connection) -> None:
        """Fold a closed connection's byte counts into the node's totals (once)."""
        if not conn.counted:
            conn.counted = True
            self.bytes_sent += conn.bytes_sent
            self.bytes_received += conn.bytes_received

    def traffic(self) -> tuple[int, int]:
        """Bytes (sent, received) over every connection this node has had, frames included."""
        open_ = [c for c in self.peers.values() if not c.counted]
        return (
            self.bytes_sent + sum(c.bytes_sent for c in open_),
            self.bytes_received + sum(c.bytes_received for c in open_),
        )


def _keepalive(transport: Any) -> None:
    """TCP keep-alive probes after 10 s of silence, every 5 s, three times: a connection to a
    machine that vanished (no FIN, no RST) is found dead within about 25 s."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
