"""Frames = a 4-byte big-endian length prefix and a body (pure, bytes in/out).

The length is checked against the configured maximum *before* any of the body is read.
"""

from __future__ import annotations

import struct

from asyncmpc.errors import DecodeError, FrameTooLarge

__all__ = ["PREFIX", "FrameDecoder", "check_length", "frame", "frame_prefix"]

PREFIX = struct.Struct(">I")
MAX_PREFIX_VALUE = (1 << 32) - 1


def frame_prefix(body_len: int) -> bytes:
    """The 4-byte prefix announcing a body of ``body_len`` bytes."""
    if not 0 <= body_len <= MAX_PREFIX_VALUE:
        raise ValueError(f"frame body of {body_len} bytes does not fit a 4-byte length prefix")
    return PREFIX.pack(body_len)


def frame(body: bytes) -> bytes:
    """Prefix and body as one bytes object (for small frames and tests)."""
    return frame_prefix(len(body)) + body


def check_length(prefix: bytes, max_frame: int) -> int:
    """Decode a 4-byte prefix; raise FrameTooLarge if it announces more than ``max_frame``."""
    if len(prefix) != PREFIX.size:
        raise DecodeError(f"frame prefix must be {PREFIX.size} bytes, got {len(prefix)}")
    (length,) = PREFIX.unpack(prefix)
    if length > max_frame:
        raise FrameTooLarge(f"frame of {length} bytes announced, above the maximum of {max_frame}")
    return int(length)


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes in any pieces, get complete frame bodies out.

    Raises FrameTooLarge as soon as a prefix announces an oversized frame; after any error the
    decoder is unusable (the connection must be closed).
    """

    __slots__ = ("_broken", "_buf", "_max", "_need")

    def __init__(self, max_frame: int) -> None:
        self._buf = bytearray()
        self._need: int | None = None
        self._max = max_frame
        self._broken = False

    def feed(self, data: bytes) -> list[bytes]:
        if self._broken:
            raise DecodeError("frame decoder already failed; the connection must be closed")
        self._buf += data
        out: list[bytes] = []
        while True:
            if self._need is None:
                if len(self._buf) < PREFIX.size:
                    return out
                try:
                    self._need = check_length(bytes(self._buf[: PREFIX.size]), self._max)
                except DecodeError:
                    self._broken = True
                    raise
                del self._buf[: PREFIX.size]
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a complete frame."""
        return len(self._buf) + (PREFIX.size if self._need is not None else 0)
