"""Cryptographically secure randomness for shares (AES-128 counter mode, ``cryptography``).

A *seed* is 16 bytes from ``os.urandom``. ``expand`` turns a seed into a stream of int64 ring
elements: the AES-128 counter-mode keystream under the seed as key, starting at counter block
nonce || 2 for a 12-byte ``nonce`` (zero by default). Different uses of one key are kept apart
by the nonce, so one pairwise key yields any number of independent streams of up to 2^32
blocks (64 GiB). The keystream is produced by encrypting zeros with AES-GCM, which is exactly
that counter mode (the GCM tag is never computed): OpenSSL runs GCM with vector AES
instructions where the CPU has them, about a quarter faster than its plain CTR on our
machines. Nothing here uses numpy's general-purpose generators.

Pairwise zero-sharing (for resharing products): party i holds keys k_i and k_{i+1}; its share of
zero is alpha_i = F(k_i, tag) - F(k_{i+1}, tag); the three alphas sum to 0 and each one is
pseudo-random to anyone missing one of the two keys.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.poly1305 import Poly1305

from asyncmpc.crypto.ring import RingArray

__all__ = [
    "MAC_KEY_BYTES",
    "NONCE_BYTES",
    "SEED_BYTES",
    "mac",
    "mac_ok",
    "RandomBytes",
    "ZeroSharer",
    "add_keystreams",
    "expand",
    "expand_into",
    "keystream_blocks",
    "new_seed",
    "nonce_for",
    "round_nonce",
]

SEED_BYTES = 16
RandomBytes = Callable[[int], bytes]
"""A source of secure random bytes, ``os.urandom`` by default; injected for reproducible tests."""

NONCE_BYTES = 12
_ZERO_NONCE = bytes(NONCE_BYTES)
BLOCK = 1 << 15
"""Elements per block (256 KiB): keystreams are produced and consumed a cache-sized block at a
time, so a sum of several streams, or a stream added into a vector, crosses memory once."""
_ZEROS = memoryview(bytes(8 * BLOCK))


def new_seed(random_bytes: RandomBytes = os.urandom) -> bytes:
    """A fresh 16-byte seed from a cryptographically secure source."""
    seed = random_bytes(SEED_BYTES)
    if len(seed) != SEED_BYTES:
        raise ValueError(f"random_bytes returned {len(seed)} bytes, wanted {SEED_BYTES}")
    return seed


def round_nonce(round_no: int) -> bytes:
    """The nonce of round ``round_no``'s streams under a data owner's registered keys."""
    return b"\x01" + round_no.to_bytes(NONCE_BYTES - 1, "big")


def nonce_for(tag: str | bytes) -> bytes:
    """A 12-byte nonce derived from a label, for domain separation under one key."""
    raw = tag.encode() if isinstance(tag, str) else tag
    return hashlib.blake2b(raw, digest_size=NONCE_BYTES).digest()


def _keystream(seed: bytes, nonce: bytes) -> Any:
    """An encryptor whose output on zeros is the counter-mode keystream from nonce || 2."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"seed must be {SEED_BYTES} bytes, got {len(seed)}")
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    return Cipher(algorithms.AES(seed), modes.GCM(nonce)).encryptor()


def keystream_blocks(
    seeds: Sequence[bytes],
    size: int,
    *,
    into: RingArray | None = None,
    nonce: bytes = _ZERO_NONCE,
    nonces: Sequence[bytes] | None = None,
) -> Iterator[tuple[int, int, RingArray]]:
    """For each block of ``size`` elements: ``(lo, hi, block)``, block = the sum of the seeds'
    keystreams over elements lo..hi (wrapping mod 2^64); seed i at ``nonces[i]`` if given,
    else every seed at ``nonce``.

    ``block`` is a scratch buffer reused for the next block, unless ``into`` (a writeable
    C-contiguous int64 array of ``size`` elements) is given: then the sums are written into it
    and ``block`` is its slice. The first stream is written straight into the block, the others
    are added to it while it is in cache.
    """
    if not seeds:
        raise ValueError("keystream_blocks needs at least one seed")
    if nonces is not None and len(nonces) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(nonces)} nonces")
    encs = [_keystream(seed, nonces[i] if nonces is not None else nonce) for i, seed in enumerate(seeds)]
    if into is not None:
        if into.dtype != np.int64 or not into.flags.c_contiguous or not into.flags.writeable or into.size != size:
            raise ValueError(f"into must be a writeable C-contiguous int64 array of {size} elements")
        flat: RingArray | None = into.reshape(-1)
    else:
        flat = None
    # update_into wants 15 bytes of room past its input (CTR never writes them): two spare elements
    span = min(size, BLOCK) + 2
    own = np.empty(span, dtype=np.int64)
    spare = np.empty(span, dtype=np.int64) if len(seeds) > 1 else own
    for lo in range(0, size, BLOCK):
        hi = min(size, lo + BLOCK)
        n = hi - lo
        zeros = _ZEROS[: 8 * n]
        direct = flat is not None and hi + 2 <= size  # straight into ``into``
        block, room = (flat[lo:hi], flat[lo : hi + 2]) if direct else (own[:n], own)  # type: ignore[index]
        encs[0].update_into(zeros, room.data.cast("B"))
        for enc in encs[1:]:
            enc.update_into(zeros, spare.data.cast("B"))
            np.add(block, spare[:n], out=block)
        if flat is not None and not direct:
            flat[lo:hi] = block
            block = flat[lo:hi]
        yield lo, hi, block


def add_keystreams(
    acc: RingArray, seeds: Sequence[bytes], *, subtract: bool = False, nonces: Sequence[bytes] | None = None
) -> RingArray:
    """acc += (or -=) the sum of the seeds' keystreams (see ``keystream_blocks``), a block at a
    time; returns ``acc``."""
    if not acc.flags.c_contiguous or acc.dtype != np.int64:
        raise ValueError("acc must be a C-contiguous int64 array")
    if not seeds:
        return acc
    flat = acc.reshape(-1)
    op = np.subtract if subtract else np.add
    for lo, hi, block in keystream_blocks(seeds, flat.size, nonces=nonces):
        part = flat[lo:hi]
        op(part, block, out=part)
    return acc


def expand_into(seed: bytes, out: RingArray, nonce: bytes = _ZERO_NONCE) -> RingArray:
    """Fill ``out`` (C-contiguous int64) with the AES-CTR keystream of ``seed``; return it."""
    if out.dtype != np.int64 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be a writeable C-contiguous int64 array")
    for _ in keystream_blocks([seed], out.size, into=out, nonce=nonce):
        pass
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
