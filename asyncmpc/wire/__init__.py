"""Message declarations, msgpack codec and framing (pure: bytes in, messages out)."""

from asyncmpc.wire.codec import decode_message, encode_message
from asyncmpc.wire.framing import FrameDecoder, frame, frame_prefix
from asyncmpc.wire.messages import MESSAGES, Message

__all__ = [
    "MESSAGES",
    "FrameDecoder",
    "Message",
    "decode_message",
    "encode_message",
    "frame",
    "frame_prefix",
]
