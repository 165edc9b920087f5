"""Layer 5: one framed, message-level connection to a named peer (asyncio only here and in runtime).

Reads are bounded: the length prefix is checked against the maximum frame size before the body
is read, and a started body must arrive within ``body_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from asyncmpc.errors import DecodeError, PeerLost
from asyncmpc.wire.codec import decode_message, encode_parts
from asyncmpc.wire.framing import PREFIX, check_length, frame_prefix
from asyncmpc.wire.messages import Message

__all__ = ["Connection"]

log = logging.getLogger(__name__)

LARGE_BODY = 1 << 20
"""Frames at least this large are read under the node's ``large_bodies`` semaphore."""


class Connection:
    """A connection whose frames are messages. ``name`` is the peer's player name once known."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_frame: int,
        body_timeout: float,
        name: str = "?",
        large_bodies: asyncio.Semaphore | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.max_frame = max_frame
        self.body_timeout = body_timeout
        self.name = name
        self.large_bodies = large_bodies
        self.bytes_sent = 0
        self.bytes_received = 0
        self.counted = False
        self._send_lock = asyncio.Lock()
        self._closed = False

    @property
    def address(self) -> str:
        peer = self.writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else str(peer)

    async def send(self, msg: Message) -> None:
        """Encode and write one message; raises PeerLost if the connection is gone."""
        parts = encode_parts(msg)
        size = sum(len(p) for p in parts)
        async with self._send_lock:
            if self._closed:
                raise PeerLost(f"connection to {self.name} is closed")
            try:
                self.writer.write(frame_prefix(size))
                for part in parts:  # array bodies go to the transport from their own memory
                    self.writer.write(part)
                await self.writer.drain()
            except (ConnectionError, OSError) as exc:
                raise PeerLost(f"connection to {self.name} lost while sending: {exc}") from exc
            self.bytes_sent += PREFIX.size + size
        log.debug("sent %s to %s (%d bytes)", msg.KIND, self.name, size)

    async def read(self, timeout: float | None = None) -> Message:
        """The next message. ``timeout`` bounds the wait for its first byte (None: no bound).

        Raises PeerLost on end of stream, DecodeError (FrameTooLarge included) on a bad frame.
        """
        try:
            async with asyncio.timeout(timeout):
                prefix = await self.reader.readexactly(PREFIX.size)
            length = check_length(prefix, self.max_frame)
            if self.large_bodies is not None and length >= LARGE_BODY:
                # bound how many large frames are buffered at once, whatever the number of peers
                async with self.large_bodies, asyncio.timeout(self.body_timeout):
                    body = await self.reader.readexactly(length)
            else:
                async with asyncio.timeout(self.body_timeout):
                    body = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise DecodeError(f"connection closed inside a frame ({len(exc.partial)} bytes read)") from exc
            raise PeerLost(f"{self.name} closed the connection") from exc
        except TimeoutError as exc:
            raise PeerLost(f"{self.name} sent nothing for too long") from exc
        except (ConnectionError, OSError) as exc:
            raise PeerLost(f"connection to {self.name} lost: {exc}") from exc
        self.bytes_received += PREFIX.size + length
        msg = decode_message(body)
        log.debug("received %s from %s (%d bytes)", msg.KIND, self.name, length)
        return msg

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 5.0)

    @property
    def closed(self) -> bool:
        return self._closed
