"""Layer 2: cryptographically secure randomness for shares (AES-128-CTR via ``cryptography``).

A *seed* is 16 bytes from ``os.urandom``. ``expand`` turns a seed into a stream of int64 ring
elements by AES-CTR-encrypting zeros under the seed as key; different uses of one key are kept
apart by a 16-byte counter block (``nonce``), so one pairwise key yields any number of
independent streams. Nothing here uses numpy's general-purpose generators.

Pairwise zero-sharing (for resharing products): party i holds keys k_i and k_{i+1}; its share of
zero is alpha_i = F(k_i, tag) - F(k_{i+1}, tag); the three alphas sum to 0 and each one is
pseudo-random to anyone missing one of the two keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from asyncmpc.ring import RingArray

__all__ = [
    "MAC_KEY_BYTES",
    "SEED_BYTES",
    "mac",
    "mac_ok",
    "RandomBytes",
    "ZeroSharer",
    "expand",
    "expand_into",
    "new_seed",
    "nonce_for",
]

SEED_BYTES = 16
RandomBytes = Callable[[int], bytes]
"""A source of secure random bytes, ``os.urandom`` by default; injected for reproducible tests."""

_ZERO_NONCE = bytes(16)
_ZEROS_CHUNK = 1 << 18  # expand in 256 KiB pieces: cache-sized, and no vector-sized buffer of zeros
_ZEROS = memoryview(bytes(_ZEROS_CHUNK + 16))


def new_seed(random_bytes: RandomBytes = os.urandom) -> bytes:
    """A fresh 16-byte seed from a cryptographically secure source."""
    seed = random_bytes(SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"random_bytes returned {len(seed)} bytes, wanted {SEED_BYTES}")
    return seed


def nonce_for(tag: str | bytes) -> bytes:
    """A 16-byte CTR starting block derived from a label, for domain separation under one key."""
    raw = tag.encode() if isinstance(tag, str) else tag
    digest = hashlib.blake2b(raw, digest_size=16).digest()
    # Clear the top bits of the low counter word so no stream of < 2^32 blocks wraps into another.
    return digest[:12] + b"\x00\x00\x00\x00"


def expand_into(seed: bytes, out: RingArray, nonce: bytes = _ZERO_NONCE) -> RingArray:
    """Fill ``out`` (C-contiguous int64) with the AES-CTR keystream of ``seed``; return it."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if out.dtype != np.int64 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writeable C-contiguous int64 array")
    enc = Cipher(algorithms.AES(seed), modes.CTR(nonce)).encryptor()
    buf = memoryview(out.data).cast("B")
    n = len(buf)
    pos = 0
    # update_into wants 15 bytes of room past the input (CTR never writes them), so every piece
    # but the last writes straight into ``out``; the last goes through a small scratch buffer.
    while n - pos > _ZEROS_CHUNK + 16:
        enc.update_into(_ZEROS[:_ZEROS_CHUNK], buf[pos : pos + _ZEROS_CHUNK + 16])
        pos += _ZEROS_CHUNK
    rest = n - pos
    if rest:
        tail = bytearray(rest + 16)
        enc.update_into(_ZEROS[:rest], tail)
        buf[pos:] = memoryview(tail)[:rest]
    return out


def expand(seed: bytes, shape: tuple[int, ...] | int, nonce: bytes = _ZERO_NONCE) -> RingArray:
    """A fresh int64 array of ``shape`` filled from ``seed`` (uniform over Z_2^64)."""
    out = np.empty(shape, dtype=np.int64)
    return expand_into(seed, out, nonce)


MAC_KEY_BYTES = 32


def mac(key: bytes, values: RingArray) -> bytes:
    """Poly1305 tag (16 bytes) of an array's bytes under a one-time 32-byte key."""
    return Poly1305.generate_tag(key, memoryview(np.ascontiguousarray(values).data).cast("B"))


def mac_ok(key: bytes, values: RingArray, tag: bytes) -> bool:
    """Whether ``tag`` is the Poly1305 tag of ``values`` under ``key`` (constant-time compare)."""
    return hmac.compare_digest(mac(key, values), tag)


class ZeroSharer:
    """One party's view of the three pairwise PRF keys, for shares of zero.

    Party i keeps ``own`` = k_i (which it sampled) and ``next_key`` = k_{i+1} (sampled by party
    i+1 and sent to party i at start-up). Calls with the same tag on all three parties return
    three arrays that add up to zero.
    """

    __slots__ = ("_next", "_own")

    def __init__(self, own: bytes, next_key: bytes) -> None:
        if len(own) != SEED_BYTES or len(next_key) != SEED_BYTES:
            raise ValueError(f"PRF keys must be {SEED_BYTES} bytes")
        self._own = own
        self._next = next_key

    def zero_share(self, tag: str, shape: tuple[int, ...] | int) -> RingArray:
        """alpha_i = F(k_i, tag) - F(k_{i+1}, tag) for this party."""
        nonce = nonce_for(tag)
        alpha = expand(self._own, shape, nonce)
        np.subtract(alpha, expand(self._next, shape, nonce), out=alpha)
        return alpha

    def __repr__(self) -> str:  # never show keys
        return "ZeroSharer(<keys hidden>)"
