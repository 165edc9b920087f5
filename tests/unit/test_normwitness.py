"""The norm check in the ring with honestly computing servers (``crypto.normwitness``): three
servers simulated on real shares; an honest owner passes, a poisoning one fails whatever bits
it sends."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest

from asyncmpc.crypto.normwitness import NormBits, bit_residues, recompositions, witness
from asyncmpc.crypto.prf import ZeroSharer
from asyncmpc.crypto.projections import WrapTest, project
from asyncmpc.crypto.rss import dot_local, share

BOUND = 2**16  # one model unit at 16 fractional bits
LAYOUT = NormBits(WrapTest(bound=BOUND))
D = 2_000


def _servers() -> list[ZeroSharer]:
    keys = [os.urandom(16) for _ in range(3)]
    return [ZeroSharer(keys[i], keys[(i + 1) % 3]) for i in range(3)]


def checks(x: np.ndarray, bits: np.ndarray, coin: bytes) -> tuple[bool, bool]:
    """What three servers find from shares of x and of the owner's bits: (every recomposition
    holds, every digit is a bit)."""
    zeros = _servers()
    xs, bs = share(x), share(bits)
    rec = np.zeros(2 * LAYOUT.test.k + 2, dtype=np.int64)
    products = np.zeros(LAYOUT.size, dtype=np.int64)
    for i in range(3):
        y = project(coin, LAYOUT.test.k, [xs[i].a])[0]  # this server's part of the projections
        s = np.atleast_1d(dot_local(xs[i], xs[i], zeros[i], "norm:s"))
        rec += recompositions(LAYOUT, y, bs[i].a, s, constants=i == 0)
        products += bit_residues(bs[i], zeros[i], "norm:bits")
    return not rec.any(), not products.any()


def accepted(x: np.ndarray, bits: np.ndarray, coin: bytes) -> bool:
    return all(checks(x, bits, coin))


def _vector(norm: float, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=D)
    return np.floor(v / np.linalg.norm(v) * norm).astype(np.int64)


def _word_bits(values: list[int], width: int, *, binary: bool = True) -> np.ndarray:
    """Digits of each value (mod 2^64): true bits, or (``binary`` False) the whole value as its
    lowest digit, which recomposes exactly but is no bit."""
    if binary:
        return np.array([[((v % 2**64) >> t) & 1 for t in range(width)] for v in values], dtype=np.uint64).view(
            np.int64
        )
    out = np.zeros((len(values), width), dtype=np.uint64)
    out[:, 0] = [v % 2**64 for v in values]
    return out.view(np.int64)


def cheat(x: np.ndarray, coin: bytes, *, binary: bool) -> np.ndarray:
    """A poisoner's best bits: the digits of the true values (which need not fit), binary or not."""
    t, b2 = LAYOUT.test.threshold, BOUND**2
    y = [int(v) for v in project(coin, LAYOUT.test.k, [x])[0].tolist()]
    s = sum(int(v) ** 2 for v in x.tolist()) % 2**64
    parts = [
        _word_bits([v + t for v in y], LAYOUT.width, binary=binary),
        _word_bits([t - v for v in y], LAYOUT.width, binary=binary),
        _word_bits([s, b2 - s], LAYOUT.norm_width, binary=binary),
    ]
    return np.concatenate([p.reshape(-1) for p in parts])


def test_an_honest_owner_within_the_bound_is_accepted() -> None:
    for seed in range(5):
        coin = os.urandom(16)
        x = _vector(BOUND - 5, seed)
        assert accepted(x, witness(x, coin, LAYOUT), coin)


POISONS: dict[str, Callable[[], np.ndarray]] = {
    "a gradient scaled by 10^3": lambda: _vector(BOUND - 5) * 1000,
    "just over the bound": lambda: _vector(BOUND + 40),
    "2^63 in one coordinate (its square is 0 mod 2^64)": lambda: np.eye(1, D, 3, dtype=np.int64) * -(2**63),
    "2^32 in one coordinate (its square wraps to 0)": lambda: np.eye(1, D, 7, dtype=np.int64)[0] * 2**32,
}


@pytest.mark.parametrize("name", list(POISONS))
def test_a_poisoning_owner_is_refused_and_cannot_make_a_witness(name: str) -> None:
    x = POISONS[name]().reshape(-1)
    coin = os.urandom(16)
    with pytest.raises(ValueError, match="over the bound"):
        witness(x, coin, LAYOUT)
    for binary in (True, False):
        assert not accepted(x, cheat(x, coin, binary=binary), coin), name


def test_digits_that_recompose_exactly_but_are_not_bits_are_caught_one_by_one() -> None:
    coin = os.urandom(16)
    x = _vector(BOUND - 5)
    good = witness(x, coin, LAYOUT)
    assert checks(x, good, coin) == (True, True)
    moved = good.copy().view(np.uint64)
    moved[0:1] += np.uint64(2)  # 2 more in digit 0, one less in digit 1 (arrays wrap): the same value
    moved[1:2] -= np.uint64(1)
    assert checks(x, moved.view(np.int64), coin) == (True, False)
    high = good.copy().view(np.uint64)
    high[3:4] += np.uint64(2**63)  # 2^3 * 2^63 = 0 mod 2^64: the same value; a batched check misses it half the time
    assert checks(x, high.view(np.int64), coin) == (True, False)


def test_the_witness_has_the_stated_widths() -> None:
    assert 2**LAYOUT.width > 2 * LAYOUT.test.threshold >= 2 ** (LAYOUT.width - 1)
    assert 2**LAYOUT.norm_width > BOUND**2 >= 2 ** (LAYOUT.norm_width - 1)
    assert LAYOUT.size == 2 * 48 * LAYOUT.width + 2 * LAYOUT.norm_width
    with pytest.raises(ValueError, match="a witness of"):
        LAYOUT.split(np.zeros(3, dtype=np.int64))
