"""Layer 3: messages <-> msgpack bodies (pure).

A body is one msgpack map: ``kind``, the envelope fields and the message's own fields. numpy
arrays travel as ExtType 1: a dtype byte (``q`` int64, ``d`` float64), the number of dimensions,
each dimension as little-endian uint64, then the raw little-endian bytes; they are decoded with
``np.frombuffer`` (read-only, no further copy). Every failure to decode, whatever its cause,
is a DecodeError that says what was wrong.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from typing import Any

import msgpack
import numpy as np

from asyncmpc.errors import DecodeError
from asyncmpc.prf import SEED_BYTES
from asyncmpc.rss import Seed
from asyncmpc.wire import messages as m

__all__ = ["ARRAY_EXT", "decode_message", "encode_message", "field_types"]

ARRAY_EXT = 1
MAX_NDIM = 8
MAX_NAMES = 1_000_000
_DTYPES = {b"q"[0]: np.dtype("<i8"), b"d"[0]: np.dtype("<f8")}
_CODES = {np.dtype("<i8"): b"q", np.dtype("<f8"): b"d"}
_ENVELOPE = ("session", "round_no")


def _field_types(cls: type[m.Message]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, vars(m))
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_FIELDS: dict[type[m.Message], dict[str, Any]] = {cls: _field_types(cls) for cls in m.MESSAGES.values()}


def field_types(cls: type[m.Message]) -> dict[str, Any]:
    """The declared fields of a message class and their types."""
    return dict(_FIELDS[cls])


# ---------------------------------------------------------------- encoding


def _pack_array(arr: np.ndarray[Any, Any]) -> msgpack.ExtType:
    dt = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
    code = _CODES.get(np.dtype(dt))
    if code is None:
        raise TypeError(f"arrays on the wire must be int64 or float64, got {arr.dtype}")
    if arr.ndim > MAX_NDIM:
        raise TypeError(f"arrays on the wire have at most {MAX_NDIM} dimensions, got {arr.ndim}")
    header = code + bytes([arr.ndim]) + struct.pack(f"<{arr.ndim}Q", *arr.shape)
    body = np.ascontiguousarray(arr, dtype=dt.newbyteorder("<"))
    return msgpack.ExtType(ARRAY_EXT, header + body.tobytes())


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return _pack_array(obj)
    if isinstance(obj, Seed):
        return obj.key
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_message(msg: m.Message) -> bytes:
    """The msgpack body of ``msg``. Raises TypeError for values its declaration does not allow."""
    cls = type(msg)
    if m.MESSAGES.get(cls.KIND) is not cls:
        raise TypeError(f"{cls.__name__} is not a declared message type")
    doc: dict[str, Any] = {"kind": cls.KIND}
    for name in _FIELDS[cls]:
        value = getattr(msg, name)
        doc[name] = list(value) if isinstance(value, tuple) else value
    return msgpack.packb(doc, default=_default, use_bin_type=True)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- decoding


def _unpack_array(data: bytes) -> np.ndarray[Any, Any]:
    if len(data) < 2:
        raise DecodeError("array extension shorter than its header")
    dtype = _DTYPES.get(data[0])
    if dtype is None:
        raise DecodeError(f"array extension has unknown dtype code {data[0]!r}")
    ndim = data[1]
    if ndim > MAX_NDIM:
        raise DecodeError(f"array extension has {ndim} dimensions, at most {MAX_NDIM} allowed")
    head = 2 + 8 * ndim
    if len(data) < head:
        raise DecodeError("array extension shorter than its shape")
    shape = struct.unpack_from(f"<{ndim}Q", data, 2)
    count = 1
    for dim in shape:
        count *= dim
    if count * dtype.itemsize != len(data) - head:
        raise DecodeError(
            f"array extension of shape {tuple(shape)} and dtype {dtype} needs "
            f"{count * dtype.itemsize} bytes, carries {len(data) - head}"
        )
    return np.frombuffer(data, dtype=dtype, offset=head).reshape(shape)


def _ext_hook(code: int, data: bytes) -> Any:
    if code != ARRAY_EXT:
        raise DecodeError(f"unknown msgpack extension type {code}")
    return _unpack_array(data)


def decode_message(body: bytes | memoryview, *, max_len: int | None = None) -> m.Message:
    """Decode and check one message body against its declaration.

    Raises DecodeError (with a message naming the kind and the field) for anything that is not
    exactly a declared message: garbage bytes, wrong types, missing or unknown fields.
    """
    limit = len(body) if max_len is None else max_len
    try:
        doc = msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
            ext_hook=_ext_hook,
            use_list=True,
            max_str_len=min(limit, 1 << 16),
            max_bin_len=min(limit, 1 << 16),
            max_array_len=min(limit, MAX_NAMES),
            max_map_len=64,
            max_ext_len=limit,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types (ValueError, ExtraData, FormatError...)
        raise DecodeError(f"body is not a valid msgpack message: {type(exc).__name__}: {exc}") from exc
    if not isinstance(doc, dict):
        raise DecodeError(f"body must be a msgpack map, got {type(doc).__name__}")
    kind = doc.pop("kind", None)
    cls = m.MESSAGES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise DecodeError(f"unknown message kind {kind!r}")
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
    if typ == m.FloatArray:
        if isinstance(value, np.ndarray) and value.dtype == np.float64:
            return value
        raise bad("a float64 array")
    if typ == m.Component:
        if isinstance(value, np.ndarray) and value.dtype == np.int64:
            return value
        if isinstance(value, bytes) and len(value) == SEED_BYTES:
            return Seed(value)
        raise bad(f"an int64 array or a {SEED_BYTES}-byte seed")
    raise TypeError(f"{kind}.{name}: no codec for declared type {typ!r}")  # a bug in messages.py
