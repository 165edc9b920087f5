"""One framed, message-level connection to a named peer (asyncio only here and in runtime).

Frames are read by a ``BufferedProtocol``: the kernel copies a large frame's body straight into
one buffer of its final size (no stream buffer, no joining of chunks), and the message's arrays
are views of that buffer. Small frames go through a 64 KiB staging buffer. Reads are bounded,
per connection, so that one peer can only hurt its own connection: the length prefix is
checked against the maximum frame size before any of the body is taken, and against the
connection's ``cap`` (what its sender's role may send now, ``net.policy.frame_cap``: a frame
above it waits, reading paused, until ``recheck`` finds the cap risen, and fails after
``frame_timeout``); the connection's own ``BodyBudget`` caps how many bytes of large bodies it
buffers at once, until the role takes them up (a connection whose next body does not fit waits
with its reading paused, so the data waits in the kernel, not in this process); a peer with
more than ``MAX_QUEUED`` messages not yet taken up is refused as flooding; and a frame that has
begun must arrive whole within ``frame_timeout`` (a peer that sends half a frame, or trickles
it, is dropped).

Writes: array bodies are handed to the transport without a copy, and ``send`` waits for the
transport's buffer to drain below its high-water mark. The transport may still hold a
reference to the tail of a message after that, so an array that was sent is never modified
in place afterwards (callers make new arrays instead).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from asyncmpc.errors import DecodeError, FrameTooLarge, PeerLost, RemoteProtocolError
from asyncmpc.wire.codec import decode_message, encode_parts
from asyncmpc.wire.framing import PREFIX, frame_prefix
from asyncmpc.wire.messages import Message

__all__ = ["LARGE_BODY", "BodyBudget", "Connection", "FrameProtocol"]

log = logging.getLogger(__name__)

_STAGE = 1 << 16
MAX_QUEUED = 256
"""A peer whose unread messages pile up beyond this is flooding: its connection fails."""
LARGE_BODY = _STAGE - PREFIX.size
"""Bodies at least this large are read into a buffer of their own, under the ``BodyBudget``;
smaller frames (with their prefix) always fit the staging buffer."""


class BodyBudget:
    """How many bytes of large frame bodies a connection buffers at once; waiters resume in order."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()

    def try_take(self, nbytes: int, resume: Callable[[], None]) -> bool:
        # a body larger than the whole budget may still go alone
        if not self._waiting and (self.used == 0 or self.used + nbytes <= self.limit):
            self.used += nbytes
            return True
        self._waiting.append((nbytes, resume))
        return False

    def give_back(self, nbytes: int) -> None:
        self.used -= nbytes
        while self._waiting:
            need, resume = self._waiting[0]
            if self.used and self.used + need > self.limit:
                return
            self._waiting.popleft()
            self.used += need
            resume()

    def forget(self, resume: Callable[[], None]) -> None:
        self._waiting = collections.deque(w for w in self._waiting if w[1] is not resume)


class FrameProtocol(asyncio.BufferedProtocol):
    """Splits the byte stream into frame bodies; hands them to ``Connection.read``."""

    def __init__(
        self,
        max_frame: int,
        budget: BodyBudget,
        *,
        frame_timeout: float | None = None,
        cap: Callable[[], int] | None = None,
    ) -> None:
        self.max_frame = max_frame
        self.budget = budget
        self.frame_timeout = frame_timeout
        self.cap = cap
        """The largest frame the peer may send now (None: ``max_frame``); see ``recheck``."""
        self._capped = 0  # the length of a frame waiting for the cap to rise
        self._cap_timer: asyncio.TimerHandle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._completed = 0  # frames delivered so far: the frame deadline checks for progress
        self.transport: asyncio.Transport | None = None
        self._stage = bytearray(0)  # 64 KiB once the first bytes come (strangers that never send cost nothing)
        self._stage_len = 0
        self._body: memoryview | None = None  # the large body being filled
        self._body_filled = 0
        self._pending_len = 0  # a large body waiting for budget
        self._frames: collections.deque[memoryview | bytes | Exception] = collections.deque()
        self._ready: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._paused_for: set[str] = set()
        self.closed = False
        self._lost: asyncio.Future[None] | None = None
        self._failed = False
        self.bytes_received = 0

    # ------------------------------------------------------------ transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but have its methods
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._body is not None:
            return self._body[self._body_filled :]
        if not self._stage:
            self._stage = bytearray(_STAGE)
        return memoryview(self._stage)[self._stage_len :]

    def buffer_updated(self, nbytes: int) -> None:
        self.bytes_received += nbytes
        if self._failed:
            return
        if self._body is not None:
            self._body_filled += nbytes
            if self._body_filled == len(self._body):
                body, self._body = self._body, None
                self._deliver(body)
            self._watch()
            return
        self._stage_len += nbytes
        self._parse_stage()
        self._watch()

    def _watch(self) -> None:
        """Arm the frame deadline if a frame is under way and no deadline is set."""
        if self.frame_timeout is None or self._timer is not None or not self._mid_frame() or self._failed:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.frame_timeout, self._frame_expired, self._completed)

    def _frame_expired(self, completed: int) -> None:
        self._timer = None
        if self.closed or self._failed or not self._mid_frame():
            return
        if self._completed == completed and not self._paused_for:
            self._fail(DecodeError(f"a frame did not arrive whole within {self.frame_timeout:g}s"))
            return
        self._watch()  # frames completed meanwhile (or we paused it): a new deadline for this one

    def _parse_stage(self) -> None:
        view = memoryview(self._stage)
        start = 0
        while self._stage_len - start >= PREFIX.size and self._body is None and not self._paused_for:
            (length,) = PREFIX.unpack_from(self._stage, start)
            if length > self.max_frame:
                self._fail(FrameTooLarge(f"frame of {length} bytes announced, above the maximum of {self.max_frame}"))
                return
            if self.cap is not None and length > self.cap():
                self._wait_for_cap(length)
                break
            have = self._stage_len - start - PREFIX.size
            if length < LARGE_BODY and have >= length:
                body = bytes(view[start + PREFIX.size : start + PREFIX.size + length])
                start += PREFIX.size + length
                self._deliver(body)
                continue
            if length < LARGE_BODY:
                break  # a small frame still arriving: wait in the staging buffer
            if not self.budget.try_take(length, self._budget_granted):
                self._pending_len = length
                self._pause("budget")
                break
            self._start_body(length, view[start + PREFIX.size : self._stage_len])
            start = self._stage_len
        if start:
            remaining = self._stage_len - start
            self._stage[:remaining] = self._stage[start : self._stage_len]
            self._stage_len = remaining

    def _wait_for_cap(self, length: int) -> None:
        """A frame above the sender's cap: pause reading until ``recheck`` finds it allowed."""
        self._capped = length
        self._pause("cap")
        if self.frame_timeout is not None and self._cap_timer is None:
            loop = asyncio.get_running_loop()
            self._cap_timer = loop.call_later(self.frame_timeout, self._cap_expired)

    def _cap_expired(self) -> None:
        self._cap_timer = None
        if self._capped and not self.closed and not self._failed:
            cap = self.cap() if self.cap is not None else self.max_frame
            why = f"frame of {self._capped} bytes announced, above the {cap} bytes its sender may send now"
            self._fail(FrameTooLarge(why))

    def recheck(self) -> None:
        """The cap may have risen (a larger round opened): a frame that waited for it goes on."""
        if not self._capped or (self.cap is not None and self._capped > self.cap()):
            return
        self._capped = 0
        if self._cap_timer is not None:
            self._cap_timer.cancel()
            self._cap_timer = None
        self._resume("cap")

    def _start_body(self, length: int, already: memoryview) -> None:
        buf = np.empty(length, dtype=np.uint8)  # no zero fill: every byte is about to be written
        body = memoryview(buf.data)
        got = min(len(already), length)
        body[:got] = already[:got]
        self._body, self._body_filled = body, got
        if got == length:
            self._body = None
            self._deliver(body)

    def _budget_granted(self) -> None:
        length, self._pending_len = self._pending_len, 0
        if self.closed:
            self.budget.give_back(length)
            return
        # the pending prefix sits at the start of the staging buffer, the rest is its body
        view = memoryview(self._stage)
        self._start_body(length, view[PREFIX.size : self._stage_len])
        self._stage_len = 0
        self._resume("budget")

    def _deliver(self, body: memoryview | bytes) -> None:
        self._completed += 1
        if len(self._frames) >= MAX_QUEUED:
            self._fail(RemoteProtocolError(f"sent more than {MAX_QUEUED} messages that were not taken up yet"))
            return
        self._frames.append(body)
        self._wake()

    def _fail(self, exc: Exception) -> None:
        self._frames.append(exc)
        self._failed = True
        self._wake()
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def _pause(self, why: str) -> None:
        if not self._paused_for and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._paused_for.add(why)

    def _resume(self, why: str) -> None:
        self._paused_for.discard(why)
        if not self._paused_for and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            if self._stage_len and self._body is None:
                self._parse_stage()

    def eof_received(self) -> bool | None:
        self._fail(
            PeerLost("closed the connection")
            if not self._mid_frame()
            else DecodeError("connection closed inside a frame")
        )
        return None

    def _mid_frame(self) -> bool:
        return self._body is not None or self._stage_len > 0 or self._pending_len > 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for timer in (self._timer, self._cap_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._cap_timer = None
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self.budget.forget(self._budget_granted)
        self._pending_len = 0
        if self._body is not None:
            self.budget.give_back(len(self._body))
            self._body = None
        self._fail(PeerLost(f"connection lost: {exc}" if exc else "closed the connection"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # ------------------------------------------------------------ for Connection

    async def next_frame(self, timeout: float | None) -> memoryview | bytes:
        while not self._frames:
            self._ready = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(timeout):
                await self._ready
        item = self._frames.popleft()
        if isinstance(item, Exception):
            self._frames.appendleft(item)  # the connection stays failed
            raise item
        return item

    @staticmethod
    def held(body: memoryview | bytes) -> int:
        """Budget bytes a delivered body holds until given back (large bodies only)."""
        return len(body) if isinstance(body, memoryview) and len(body) >= LARGE_BODY else 0

    def release(self) -> None:
        """Give back the budget of large frames that will never be read (the connection closed)."""
        kept: collections.deque[memoryview | bytes | Exception] = collections.deque()
        for item in self._frames:
            if isinstance(item, memoryview) and len(item) >= LARGE_BODY:
                self.budget.give_back(len(item))
            else:
                kept.append(item)
        self._frames = kept

    async def wait_closed(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until the transport has closed its socket."""
        if self.closed:
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        await asyncio.wait({self._lost}, timeout=timeout)  # does not cancel the future on timeout

    async def drain(self) -> None:
        if self.closed:
            raise PeerLost("connection closed")
        if self._drained is not None and not self._drained.done():
            await self._drained
        if self.closed:
            raise PeerLost("connection closed while sending")


class Connection:
    """A connection whose frames are messages. ``name`` is the peer's player name once known."""

    def __init__(self, protocol: FrameProtocol, *, name: str = "?") -> None:
        assert protocol.transport is not None
        self.protocol = protocol
        self.transport: asyncio.Transport = protocol.transport
        self.name = name
        self.bytes_sent = 0
        self.counted = False
        self.leaving = False
        """Dropped: its ``Reject`` is on the way, then it closes (``Node.drop``)."""
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._outbox: collections.deque[tuple[Message, float | None]] = collections.deque()
        self._queued = asyncio.Event()

    def post(self, msg: Message, timeout: float | None) -> bool:
        """Queue ``msg`` for ``pump`` to send, without waiting; False (nothing queued) when
        more than ``MAX_QUEUED`` messages wait already: the peer is not taking them."""
        if len(self._outbox) >= MAX_QUEUED:
            return False
        self._outbox.append((msg, timeout))
        self._queued.set()
        return True

    async def pump(self, stuck: Callable[[str], Awaitable[None]]) -> None:
        """Send what ``post`` queued, in order, until the connection closes. A message not
        taken within its timeout calls ``stuck`` with why (the peer stopped reading): only this
        connection's own messages wait for it."""
        while not self._closed:
            if not self._outbox:
                self._queued.clear()
                await self._queued.wait()
                continue
            msg, timeout = self._outbox.popleft()
            try:
                async with asyncio.timeout(timeout):
                    await self.send(msg)
            except PeerLost:
                return
            except TimeoutError:
                await stuck(f"took no {msg.KIND!r} for {timeout:g}s")
                return

    @property
    def bytes_received(self) -> int:
        return self.protocol.bytes_received

    def extra(self, key: str) -> Any:
        return self.transport.get_extra_info(key)

    @property
    def address(self) -> str:
        peer = self.extra("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)

    async def send(self, msg: Message) -> None:
        """Encode and write one message, waiting while the transport's buffer is full.

        Raises PeerLost if the connection is gone.
        """
        parts = encode_parts(msg)
        size = sum(len(p) for p in parts)
        async with self._send_lock:
            if self._closed or self.protocol.closed:
                raise PeerLost(f"connection to {self.name} is closed")
            self.transport.write(frame_prefix(size))
            for part in parts:  # array bodies go to the transport from their own memory
                self.transport.write(part)
            try:
                await self.protocol.drain()
            except PeerLost as exc:
                raise PeerLost(f"connection to {self.name} lost while sending") from exc
            self.bytes_sent += PREFIX.size + size
        log.debug("sent %s to %s (%d bytes)", msg.KIND, self.name, size)

    async def read(self, timeout: float | None = None) -> Message:
        """The next message. ``timeout`` bounds the wait for it (None: no bound).

        Raises PeerLost on end of stream or timeout, DecodeError (FrameTooLarge included) on a
        bad frame.
        """
        msg, held = await self.read_held(timeout)
        self.protocol.budget.give_back(held)
        return msg

    async def read_held(self, timeout: float | None = None) -> tuple[Message, int]:
        """Like ``read``, but a large body keeps its share of the node's budget: the caller
        gives back the returned byte count once the message has been taken up."""
        try:
            body = await self.protocol.next_frame(timeout)
        except TimeoutError as exc:
            raise PeerLost(f"{self.name} sent nothing for too long") from exc
        except PeerLost as exc:
            raise PeerLost(f"{self.name}: {exc}") from None
        except RemoteProtocolError:
            raise
        held = self.protocol.held(body)
        try:
            msg = decode_message(body)
        except BaseException:
            self.protocol.budget.give_back(held)
            raise
        log.debug("received %s from %s (%d bytes)", msg.KIND, self.name, len(body))
        return msg, held

    async def close(self) -> None:
        """Close, letting what is buffered go out for a second; then abort (a stopped peer
        that reads nothing must not keep the socket open)."""
        if self._closed:
            return
        self._closed = True
        self._queued.set()  # the pump sees the close
        self.protocol.release()
        self.transport.close()
        await self.protocol.wait_closed(1.0)
        if not self.protocol.closed:
            self.transport.abort()
            await self.protocol.wait_closed(1.0)

    @property
    def closed(self) -> bool:
        return self._closed
