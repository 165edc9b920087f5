"""Codec and framing: round trips, and garbage that raises only DecodeError."""

from __future__ import annotations

import dataclasses
import random
import typing

import msgpack
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncmpc.crypto.rss import KEYED, Seed
from asyncmpc.errors import DecodeError, FrameTooLarge
from asyncmpc.wire import messages as m
from asyncmpc.wire.codec import decode_message, encode_message, encode_parts, field_types
from asyncmpc.wire.framing import FrameDecoder, frame

ARR = np.arange(-5, 7, dtype=np.int64).reshape(3, 4)


def body_of(header: bytes, arrays: bytes = b"") -> bytes:
    """A frame body around a hand-made msgpack header."""
    head = len(header).to_bytes(4, "big") + header
    return head + bytes(-len(head) % 8) + arrays


def header_of(msg: m.Message) -> dict:  # type: ignore[type-arg]
    body = encode_message(msg)
    n = int.from_bytes(body[:4], "big")
    return msgpack.unpackb(body[4 : 4 + n], raw=False, ext_hook=lambda c, d: msgpack.ExtType(c, d))  # type: ignore[no-any-return]


def sample(cls: type[m.Message]) -> m.Message:
    """One instance of every message kind, with a value of each declared field type."""
    values: dict[str, object] = {}
    for i, (name, typ) in enumerate(field_types(cls).items()):
        if name == "session":
            values[name] = "sess"
        elif typ is bool:
            values[name] = True
        elif typ is int:
            values[name] = 7 + i
        elif typ is str:
            values[name] = f"text-{i}"
        elif typ is bytes:
            values[name] = bytes(range(16))
        elif typ == tuple[str, ...]:
            values[name] = ("data-owner-0", "data-owner-1")
        elif typ == tuple[int, ...]:
            values[name] = (3, 4)
        elif typ in (m.Component, m.Component | None):
            values[name] = ARR if i % 2 else Seed(bytes(range(16)))
        elif typ == tuple[bytes, ...]:
            values[name] = (bytes(64), bytes(range(64)))
        elif typ == m.RingArray or typ == m.RingArray | None:
            values[name] = ARR
        elif typ == m.FloatArray:
            values[name] = ARR.astype(np.float64) / 3
        elif typ is m.Refusal:
            values[name] = m.Refusal.RERUN
        else:
            raise AssertionError(f"no sample for {typ}")
    return cls(**values)  # type: ignore[arg-type]


def same(a: m.Message, b: m.Message) -> bool:
    if type(a) is not type(b):
        return False
    for name in field_types(type(a)):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


ALL = [sample(cls) for cls in m.MESSAGES.values()]


@pytest.mark.parametrize("msg", ALL, ids=[type(x).KIND for x in ALL])
def test_every_message_kind_round_trips(msg: m.Message) -> None:
    back = decode_message(encode_message(msg))
    assert same(msg, back)


def test_arrays_decode_without_a_copy_of_their_bytes() -> None:
    body = encode_message(m.ResultShare(session="s", contributors=("a",), a=ARR, b=ARR))
    msg = decode_message(body)
    assert isinstance(msg, m.ResultShare)
    assert not msg.a.flags.owndata and not msg.a.flags.writeable


def test_frames_fed_one_byte_at_a_time() -> None:
    stream = b"".join(frame(encode_message(msg)) for msg in ALL)
    dec = FrameDecoder(1 << 20)
    bodies: list[bytes] = []
    for i in range(len(stream)):
        bodies += dec.feed(stream[i : i + 1])
    assert dec.pending == 0
    assert all(same(a, decode_message(b)) for a, b in zip(ALL, bodies, strict=True))


def test_oversized_frame_is_refused_from_its_prefix() -> None:
    dec = FrameDecoder(1000)
    with pytest.raises(FrameTooLarge, match="1001 bytes announced, above the maximum of 1000"):
        dec.feed((1001).to_bytes(4, "big"))
    with pytest.raises(DecodeError):
        dec.feed(b"more")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "shorter than its header length"),
        (b"\x00\x00\x01\x00abc", "header of 256 bytes announced in a frame body of 7 bytes"),
        (body_of(b""), "not a valid msgpack"),
        (body_of(b"\x93\x01\x02\x03"), "must be a msgpack map"),
        (body_of(b"\x81\xa4kind\xa4nope"), "unknown message kind 'nope'"),
        (body_of(b"\x81\xa4kind\xa5hello", b"x" * 8), "arrays need 0 bytes after the header, the frame carries 8"),
    ],
)
def test_garbage_bodies_raise_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_message(body)


def test_mistyped_fields_name_kind_and_field() -> None:
    good = header_of(sample(m.OpenRound))
    for field, value, message in [
        ("shape", "3x4", r"open_round: field 'shape' must be a shape"),
        ("owners", [1, 2], r"open_round: field 'owners' must be a list of strings"),
        ("round_no", -1, r"open_round: field 'round_no' must be a non-negative integer"),
        ("extra", 1, r"open_round: unknown field 'extra'"),
    ]:
        doc = dict(good, **{field: value})
        with pytest.raises(DecodeError, match=message):
            decode_message(body_of(msgpack.packb(doc)))
    doc = dict(good)
    del doc["owners"]
    with pytest.raises(DecodeError, match="open_round: missing field 'owners'"):
        decode_message(body_of(msgpack.packb(doc)))
    share = header_of(sample(m.InputShare))
    share["ma"] = share["mb"] = share["norm_a"] = share["norm_b"] = None
    share["b"] = b"short seed"
    with pytest.raises(DecodeError, match=r"field 'b' must be an int64 array, a 16-byte seed or empty \(keyed\)"):
        decode_message(body_of(msgpack.packb(share), ARR.tobytes()))
    share["b"] = msgpack.ExtType(1, b"d\x01" + (1).to_bytes(8, "little"))
    with pytest.raises(
        DecodeError, match=r"field 'b' must be an int64 array, a 16-byte seed or empty \(keyed\), got float64 array"
    ):
        decode_message(body_of(msgpack.packb(share), ARR.tobytes() + bytes(8)))
    share["b"] = msgpack.ExtType(1, b"q\x01" + (5).to_bytes(8, "little"))
    with pytest.raises(
        DecodeError, match=r"input_share: its arrays need 136 bytes after the header, the frame carries 104"
    ):
        decode_message(body_of(msgpack.packb(share), ARR.tobytes() + bytes(8)))
    share["b"] = msgpack.ExtType(7, b"")
    with pytest.raises(DecodeError, match="unknown msgpack extension type 7"):
        decode_message(body_of(msgpack.packb(share)))


def test_a_refusal_code_is_one_of_the_declared_codes() -> None:
    reject = header_of(m.Reject(session="s", reason="why", code=m.Refusal.TOO_FEW))
    assert reject["code"] == "too_few"
    assert decode_message(body_of(msgpack.packb(reject))).code is m.Refusal.TOO_FEW  # type: ignore[attr-defined]
    for bad in ("too few", 3):
        with pytest.raises(DecodeError, match=r"reject: field 'code' must be a refusal code \(protocol, "):
            decode_message(body_of(msgpack.packb(dict(reject, code=bad))))


def test_array_bodies_are_written_from_their_own_memory() -> None:
    big = np.arange(1000, dtype=np.int64)
    parts = encode_parts(m.ResultShare(session="s", contributors=("a",), a=big, b=big))
    assert len(parts) == 3 and len(parts[0]) % 8 == 0
    assert isinstance(parts[1], memoryview)
    assert np.shares_memory(np.frombuffer(parts[1], dtype=np.int64), big)


def _mutations(rng: random.Random, valid: list[bytes]) -> typing.Iterator[bytes]:
    for _ in range(3000):
        base = rng.choice(valid)
        choice = rng.randrange(3)
        if choice == 0:
            yield rng.randbytes(rng.randrange(0, 200))
        elif choice == 1:
            yield base[: rng.randrange(0, len(base))]
        else:
            b = bytearray(base)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            yield bytes(b)


def test_thousands_of_random_truncated_and_flipped_bodies_raise_only_decode_error() -> None:
    valid = [encode_message(msg) for msg in ALL]
    rng = random.Random(20261124)
    decoded = 0
    for body in _mutations(rng, valid):
        try:
            msg = decode_message(body)
        except DecodeError:
            continue
        decoded += 1  # a flip that still makes a well-formed message is fine: it must be one
        assert type(msg).KIND in m.MESSAGES
    assert decoded < 3000


@given(st.binary(max_size=300))
def test_any_bytes_fed_to_the_framer_and_codec_raise_only_decode_error(data: bytes) -> None:
    dec = FrameDecoder(256)
    try:
        for body in dec.feed(data):
            decode_message(body)
    except DecodeError:
        pass


def test_keyed_components_travel_as_empty_bytes() -> None:
    msg = m.InputShare(session="s", round_no=3, shape=(2,), a=KEYED, b=np.arange(2, dtype=np.int64))
    back = decode_message(encode_message(msg))
    assert isinstance(back, m.InputShare) and back.a is KEYED
    np.testing.assert_array_equal(back.b, msg.b)
    assert len(encode_message(msg)) < len(encode_message(dataclasses.replace(msg, a=Seed(bytes(16)))))
