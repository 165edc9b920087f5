"""Seed expansion and the statistical independence of one server's view from the secret."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from asyncmpc.crypto import rss
from asyncmpc.crypto.prf import (
    BLOCK,
    SEED_BYTES,
    add_keystreams,
    expand,
    expand_into,
    keystream_blocks,
    new_seed,
    nonce_for,
)


def deterministic_bytes(label: str):  # type: ignore[no-untyped-def]
    """A reproducible stand-in for os.urandom, so the statistical tests cannot flake."""
    counter = 0

    def random_bytes(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(f"{label}:{counter}".encode()).digest(n)

    return random_bytes


@given(st.binary(min_size=16, max_size=16), st.integers(0, 70_000), st.binary(min_size=12, max_size=12))
def test_expand_is_the_aes_ctr_keystream_from_nonce_and_2(seed: bytes, n: int, nonce: bytes) -> None:
    ref = Cipher(algorithms.AES(seed), modes.CTR(bytes(12) + b"\0\0\0\2")).encryptor().update(bytes(8 * n))
    assert expand(seed, n).tobytes() == ref
    ref = Cipher(algorithms.AES(seed), modes.CTR(nonce + b"\0\0\0\2")).encryptor().update(bytes(8 * n))
    assert expand(seed, n, nonce).tobytes() == ref


def test_expand_into_reuses_the_buffer_and_nonces_separate_streams() -> None:
    seed = new_seed()
    buf = np.empty(100_000, dtype=np.int64)
    assert expand_into(seed, buf) is buf
    np.testing.assert_array_equal(buf, expand(seed, 100_000))
    other = expand(seed, 100_000, nonce_for("other"))
    assert np.count_nonzero(other == buf) < 5


@given(st.integers(1, 4), st.integers(0, 100_000), st.booleans())
def test_keystream_blocks_sum_the_streams_block_by_block(k: int, n: int, into: bool) -> None:
    seeds = [new_seed() for _ in range(k)]
    expected = np.zeros(n, dtype=np.int64)
    for seed in seeds:
        expected += expand(seed, n)
    out = np.full(n, 7, dtype=np.int64)
    ends = []
    for lo, hi, block in keystream_blocks(seeds, n, into=out if into else None):
        np.testing.assert_array_equal(block, expected[lo:hi])
        ends.append((lo, hi))
    assert [lo for lo, _ in ends] == list(range(0, n, BLOCK)) and (not ends or ends[-1][1] == n)
    if into:
        np.testing.assert_array_equal(out, expected)
    acc = np.arange(n, dtype=np.int64)
    add_keystreams(acc, seeds)
    np.testing.assert_array_equal(acc - expected, np.arange(n))
    add_keystreams(acc, seeds, subtract=True)
    np.testing.assert_array_equal(acc, np.arange(n))


def test_bad_seed_or_buffer_is_refused() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        expand(b"short", 4)
    with pytest.raises(ValueError, match="int64"):
        expand_into(new_seed(), np.empty(4, dtype=np.int32))  # type: ignore[arg-type]
    assert len(new_seed()) == SEED_BYTES


def _bits(values: np.ndarray) -> np.ndarray:
    """Count of ones at each of the 64 bit positions."""
    u = values.view(np.uint64).ravel()
    return np.array([int(np.count_nonzero((u >> np.uint64(b)) & np.uint64(1))) for b in range(64)])


def _views(x: np.ndarray, samples: int, label: str) -> list[np.ndarray]:
    """For each server, every int64 it receives over ``samples`` sharings of ``x``."""
    rb = deterministic_bytes(label)
    seen: list[list[np.ndarray]] = [[], [], []]
    for _ in range(samples):
        for sh in rss.share_seeded(x, rb):
            for comp in (sh.a, sh.b):
                raw = comp.key if isinstance(comp, rss.Seed) else comp.tobytes()
                seen[sh.server].append(np.frombuffer(raw, dtype=np.int64))
    return [np.concatenate(v) for v in seen]


def _dependence(v0: np.ndarray, v1: np.ndarray) -> list[str]:
    """Reasons to think the views v0 (secret 0) and v1 (a large secret) differ; empty if none."""
    found = []
    ks = stats.ks_2samp(v0.view(np.uint64).astype(np.float64), v1.view(np.uint64).astype(np.float64))
    if ks.pvalue < 1e-3:
        found.append(f"values differ in distribution (KS p = {ks.pvalue:.2g})")
    ones0, ones1 = _bits(v0), _bits(v1)
    table = np.stack([np.stack([ones0, v0.size - ones0]), np.stack([ones1, v1.size - ones1])])
    pvalues = [stats.chi2_contingency(table[:, :, b]).pvalue for b in range(64)]
    if min(pvalues) < 1e-4:
        found.append(f"bit {int(np.argmin(pvalues))} depends on the secret (p = {min(pvalues):.2g})")
    total = int(ones0.sum() + ones1.sum())
    if stats.binomtest(total, 64 * (v0.size + v1.size), 0.5).pvalue < 1e-4:
        found.append("bits are biased")
    return found


ZERO = np.zeros(16, dtype=np.int64)
BIG = np.full(16, np.iinfo(np.int64).max, dtype=np.int64)
BIG[::2] = np.iinfo(np.int64).min + 12345


def test_one_servers_view_is_independent_of_the_secret() -> None:
    """Each server's view (seed-compressed sharing, seeds included) looks the same for 0 and BIG."""
    views0, views1 = _views(ZERO, 400, "zero"), _views(BIG, 400, "big")
    for server in range(3):
        assert _dependence(views0[server], views1[server]) == [], f"server {server}"


def test_the_independence_check_catches_a_leaky_sharing() -> None:
    """Control: masking only the low 32 bits leaves the high bits of the secret visible."""
    rb = deterministic_bytes("leaky")

    def leaky(x: np.ndarray) -> np.ndarray:
        mask = np.frombuffer(rb(8 * x.size), dtype=np.int64) & np.int64(0xFFFFFFFF)
        return x ^ mask

    v0 = np.concatenate([leaky(ZERO) for _ in range(400)])
    v1 = np.concatenate([leaky(BIG) for _ in range(400)])
    assert _dependence(v0, v1)
