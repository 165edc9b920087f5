"""Messages <-> frame bodies (pure).

A frame body is ``[u32 header length][msgpack header][padding to 8 bytes][array bytes ...]``.
The header is one msgpack map: ``kind``, the envelope fields and the message's own fields. A
numpy array in it is only a reference, ExtType 1 holding a dtype byte (``q`` int64, ``d``
float64), the number of dimensions and each dimension as little-endian uint64; its raw
little-endian bytes follow the header, arrays in the order the header names them. So large
arrays are written from their own memory (``encode_parts`` returns buffers, no copy) and read
as ``np.frombuffer`` views of the received frame (read-only, no copy). Every failure to decode,
whatever its cause, is a DecodeError that says what was wrong.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from typing import Any

import msgpack
import numpy as np

from asyncmpc.crypto.prf import SEED_BYTES
from asyncmpc.crypto.rss import KEYED, Keyed, Seed
from asyncmpc.errors import DecodeError
from asyncmpc.wire import messages as m

__all__ = ["ARRAY_EXT", "decode_message", "encode_message", "encode_parts", "field_types"]

ARRAY_EXT = 1
MAX_NDIM = 8
MAX_NAMES = 1_000_000
MAX_HEADER = 1 << 24
_HEADER_LEN = struct.Struct(">I")
_DTYPES = {b"q"[0]: np.dtype("<i8"), b"d"[0]: np.dtype("<f8")}
_CODES = {np.dtype("<i8"): b"q", np.dtype("<f8"): b"d"}
_PAD = bytes(8)


def _field_types(cls: type[m.Message]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(m))
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_FIELDS: dict[type[m.Message], dict[str, Any]] = {cls: _field_types(cls) for cls in m.MESSAGES.values()}
_REFUSALS = frozenset(r.value for r in m.Refusal)


def field_types(cls: type[m.Message]) -> dict[str, Any]:
    """The declared fields of a message class and their types."""
    return dict(_FIELDS[cls])


# ---------------------------------------------------------------- encoding


class _Packer:
    """Turns arrays into header references, collecting their bodies in order."""

    def __init__(self) -> None:
        self.bodies: list[memoryview] = []

    def default(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            return self.array(obj)
        if isinstance(obj, Seed):
            return obj.key
        if isinstance(obj, Keyed):
            return b""
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"cannot encode {type(obj).__name__}")

    def array(self, arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
        dt = np.dtype(arr.dtype).newbyteorder("<")
        code = _CODES.get(dt)
        if code is None:
            raise TypeError(f"arrays on the wire must be int64 or float64, got {arr.dtype}")
        if arr.ndim > MAX_NDIM:
            raise TypeError(f"arrays on the wire have at most {MAX_NDIM} dimensions, got {arr.ndim}")
        body = np.ascontiguousarray(arr, dtype=dt)
        self.bodies.append(memoryview(body.data).cast("B"))
        return msgpack.ExtType(ARRAY_EXT, code + bytes([arr.ndim]) + struct.pack(f"<{arr.ndim}Q", *arr.shape))


def encode_parts(msg: m.Message) -> list[bytes | memoryview]:
    """The body of ``msg`` as buffers to write one after another (array bodies are not copied).

    Raises TypeError for values its declaration does not allow.
    """
    cls = type(msg)
    if m.MESSAGES.get(cls.KIND) is not cls:
        raise TypeError(f"{cls.__name__} is not a declared message type")
    doc: dict[str, Any] = {"kind": cls.KIND}
    for name in _FIELDS[cls]:
        value = getattr(msg, name)
        doc[name] = list(value) if isinstance(value, tuple) else value
    packer = _Packer()
    header = msgpack.packb(doc, default=packer.default, use_bin_type=True)
    pad = -(_HEADER_LEN.size + len(header)) % 8
    return [_HEADER_LEN.pack(len(header)) + header + _PAD[:pad], *packer.bodies]


def encode_message(msg: m.Message) -> bytes:
    """The body of ``msg`` as one bytes object (small messages, tests)."""
    return b"".join(encode_parts(msg))


# ---------------------------------------------------------------- decoding


class _ArrayRef:
    __slots__ = ("dtype", "nbytes", "shape")

    def __init__(self, dtype: np.dtype[Any], shape: tuple[int, ...], nbytes: int) -> None:
        self.dtype, self.shape, self.nbytes = dtype, shape, nbytes


def _array_ref(code: int, data: bytes) -> Any:
    if code != ARRAY_EXT:
        raise DecodeError(f"unknown msgpack extension type {code}")
    if len(data) < 2:
        raise DecodeError("array reference shorter than its header")
    dtype = _DTYPES.get(data[0])
    if dtype is None:
        raise DecodeError(f"array reference has unknown dtype code {data[0]!r}")
    ndim = data[1]
    if ndim > MAX_NDIM:
        raise DecodeError(f"array reference has {ndim} dimensions, at most {MAX_NDIM} allowed")
    if len(data) != 2 + 8 * ndim:
        raise DecodeError(f"array reference of {ndim} dimensions must be {2 + 8 * ndim} bytes, got {len(data)}")
    shape = struct.unpack_from(f"<{ndim}Q", data, 2)
    count = 1
    for dim in shape:
        count *= dim
    return _ArrayRef(dtype, tuple(shape), count * dtype.itemsize)


def decode_message(body: bytes | bytearray | memoryview) -> m.Message:
    """Decode and check one frame body against its message declaration.

    Arrays are read-only views into ``body``. Raises DecodeError (naming the kind and the
    field) for anything that is not exactly a declared message: garbage bytes, wrong types,
    missing or unknown fields, array bytes that do not match their shapes.
    """
    view = memoryview(body).cast("B") if not isinstance(body, bytes) else memoryview(body)
    if len(view) < _HEADER_LEN.size:
        raise DecodeError(f"frame body of {len(view)} bytes is shorter than its header length")
    (header_len,) = _HEADER_LEN.unpack_from(view, 0)
    if header_len > min(MAX_HEADER, len(view) - _HEADER_LEN.size):
        raise DecodeError(f"header of {header_len} bytes announced in a frame body of {len(view)} bytes")
    header = view[_HEADER_LEN.size : _HEADER_LEN.size + header_len]
    try:
        doc = msgpack.unpackb(
            header,
            raw=False,
            strict_map_key=True,
            ext_hook=_array_ref,
            use_list=True,
            max_str_len=min(header_len, 1 << 16),
            max_bin_len=min(header_len, 1 << 16),
            max_array_len=min(header_len, MAX_NAMES),
            max_map_len=64,
            max_ext_len=2 + 8 * MAX_NDIM,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, FormatError...)
        raise DecodeError(f"header is not a valid msgpack message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(f"header must be a msgpack map, got {type(doc).__name__}")
    kind = doc.pop("kind", None)
    cls = m.MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown message kind {kind!r}")
    offset = _HEADER_LEN.size + header_len
    offset += -offset % 8
    refs = [v for v in doc.values() if isinstance(v, _ArrayRef)]
    needed = sum(r.nbytes for r in refs)
    if offset + needed != len(view):
        raise DecodeError(
            f"{kind}: its arrays need {needed} bytes after the header, the frame carries {len(view) - offset}"
        )
    for key, value in doc.items():
        if isinstance(value, _ArrayRef):
            arr = np.frombuffer(view, dtype=value.dtype, count=value.nbytes // value.dtype.itemsize, offset=offset)
            doc[key] = arr.reshape(value.shape)
            offset += value.nbytes
    fields = _FIELDS[cls]
    missing = [name for name in fields if name not in doc and name not in _defaults(cls)]
    if missing:
        raise DecodeError(f"{kind}: missing field {missing[0]!r}")
    unknown = sorted(set(doc) - set(fields))
    if unknown:
        raise DecodeError(f"{kind}: unknown field {unknown[0]!r}")
    values = {name: _check(kind, name, typ, doc[name]) for name, typ in fields.items() if name in doc}
    return cls(**values)


def _defaults(cls: type[m.Message]) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _check(kind: str, name: str, typ: Any, value: Any) -> Any:
    def bad(expected: str) -> DecodeError:
        shown = type(value).__name__
        if isinstance(value, np.ndarray):
            shown = f"{value.dtype} array"
        return DecodeError(f"{kind}: field {name!r} must be {expected}, got {shown}")

    if typ is bool:
        if isinstance(value, bool):
            return value
        raise bad("true or false")
    if typ is int:
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63:
            return value
        raise bad("a non-negative integer")
    if typ is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if typ is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if typ is bytes:
        if isinstance(value, bytes):
            return value
        raise bad("bytes")
    if typ == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise bad("a list of strings")
    if typ == tuple[bytes, ...]:
        if isinstance(value, list) and all(isinstance(v, bytes) for v in value):
            return tuple(value)
        raise bad("a list of byte strings")
    if typ == tuple[int, ...]:
        if (
            isinstance(value, list)
            and len(value) <= MAX_NDIM
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 40 for v in value)
        ):
            return tuple(value)
        raise bad(f"a shape (at most {MAX_NDIM} non-negative integers)")
    if typ == m.RingArray:
        if isinstance(value, np.ndarray) and value.dtype == np.int64:
            return value
        raise bad("an int64 array")
    if typ == m.RingArray | None:
        if value is None or (isinstance(value, np.ndarray) and value.dtype == np.int64):
            return value
        raise bad("an int64 array or nil")
    if typ == m.FloatArray:
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            return value
        raise bad("a float64 array")
    if typ == m.Refusal:
        if isinstance(value, str) and value in _REFUSALS:
            return m.Refusal(value)
        raise bad(f"a refusal code ({', '.join(m.Refusal)})")
    if typ == m.Component:
        if isinstance(value, np.ndarray) and value.dtype == np.int64:
            return value
        if isinstance(value, bytes) and len(value) == SEED_BYTES:
            return Seed(value)
        if isinstance(value, bytes) and not value:
            return KEYED
        raise bad(f"an int64 array, a {SEED_BYTES}-byte seed or empty (keyed)")
    raise TypeError(f"{kind}.{name}: no codec for declared type {typ!r}")  # a bug in messages.py
