"""Tying an owner's ring vector to its field vector (``crypto.tie``)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.goldilocks import Q
from asyncmpc.crypto.projections import WrapTest
from asyncmpc.crypto.tie import TIE_K, consistent, mask_range, masked_field, masked_ring, same_integers

T = WrapTest(bound=2**16).threshold
D = 1_000


def _masks(n: int) -> list[int]:
    low, high = mask_range(T)
    return [low + int.from_bytes(os.urandom(8), "big") % (high - low) for _ in range(n)]


def _ring_parts(v: np.ndarray) -> list[np.ndarray]:
    a, b = (np.frombuffer(os.urandom(8 * v.size), dtype=np.int64).copy() for _ in range(2))
    return [a, b, v - a - b]


def _field_parts(v: np.ndarray) -> list[np.ndarray]:
    a, b = (gf.from_signed(np.frombuffer(os.urandom(8 * v.size), dtype=np.int64).copy()) for _ in range(2))
    return [a, b, gf.sub(gf.sub(v, a), b)]


def opened(x_ring: np.ndarray, x_field: np.ndarray, coin: bytes) -> tuple[np.ndarray, np.ndarray]:
    """What three servers open for one owner in a dispute: u (ring) and v (field)."""
    masks = _masks(TIE_K)
    m_ring = np.array(masks, dtype=np.uint64).view(np.int64)
    m_field = np.array(masks, dtype=np.uint64)
    u = np.zeros(TIE_K, dtype=np.int64)
    v = np.zeros(TIE_K, dtype=np.uint64)
    for xr, xf, mr, mf in zip(
        _ring_parts(x_ring), _field_parts(x_field), _ring_parts(m_ring), _field_parts(m_field), strict=True
    ):
        u += masked_ring(coin, xr, mr)
        v = gf.add(v, masked_field(coin, xf, mf))
    return u, v


def _honest(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=D)
    return np.floor(v / np.linalg.norm(v) * (2**16 - 5)).astype(np.int64)


def test_an_honest_owners_two_sharings_agree() -> None:
    for seed in range(3):
        x = _honest(seed)
        assert consistent(*opened(x, gf.from_signed(x), os.urandom(16)))


@pytest.mark.parametrize("shift", [1, 2**32 - 1, 2**40, -(2**62)])
def test_an_owner_whose_ring_vector_differs_from_its_field_vector_is_found(shift: int) -> None:
    x = _honest(0)
    ring = x.copy()
    ring[5] = ring[5] + np.int64(shift)  # poison in the ring only: the field vector stays small
    assert not consistent(*opened(ring, gf.from_signed(x), os.urandom(16)))


def test_the_aggregate_check_compares_the_integers() -> None:
    z = np.array([-3, 0, 2**40], dtype=np.int64)
    assert same_integers(z, gf.from_signed(z))
    assert not same_integers(z + np.array([0, 0, 1], dtype=np.int64), gf.from_signed(z))
    assert not same_integers(z[:2], gf.from_signed(z))
    wrapped = np.array([Q - 1], dtype=np.uint64)  # -1 in the field
    assert same_integers(np.array([-1], dtype=np.int64), wrapped)


def test_masks_hide_to_2_40_and_fit_the_field() -> None:
    low, high = mask_range(T)
    assert (high - low) >= 2**40 * 2 * T and high + T < Q // 2
    with pytest.raises(ValueError, match="cannot be masked"):
        mask_range(2**23)


def test_the_best_forgery_passes_three_projections_in_four_and_never_all() -> None:
    """x~_k and x_F,k that differ by q - 2^64 + ... agree at r_k = 0 and r_k = +1 (the bound's
    case |D| >= q / 2): each projection passes with probability 3/4, all 100 never."""
    x = _honest(0)
    ring, field = x.copy(), gf.from_signed(x)
    big = 2**63 - 5  # D: the same integer mod 2^64 and mod q for the two coordinates below
    ring[5] = np.int64(big)
    field[5] = np.uint64(big % Q)
    share = 0.0
    for _ in range(10):
        u, v = opened(ring, field, os.urandom(16))
        agree = np.array([int(a) == int(b) for a, b in zip(u.view(np.uint64).tolist(), v.tolist(), strict=True)])
        assert not agree.all()
        share += agree.mean() / 10
    assert 0.6 < share < 0.9, share
