"""The norm check in the field (``crypto.fieldnorm``): an owner's proofs checked by three
servers on additive parts, as they hold them; an honest owner passes, a poisoning one fails."""

from __future__ import annotations

import os

import numpy as np
import pytest

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.fieldnorm import NormProof, decide, norm_queries, prove_norm, witness_bits
from asyncmpc.crypto.flp import Layout, Proof
from asyncmpc.crypto.goldilocks import Q
from asyncmpc.crypto.normwitness import NormBits
from asyncmpc.crypto.projections import WrapTest

BOUND = 2**16
LAYOUT = NormBits(WrapTest(bound=BOUND))
D = 1_500


def _random(n: int) -> np.ndarray:
    return gf.from_signed(np.frombuffer(os.urandom(8 * n), dtype=np.int64).copy())


def _parts(v: np.ndarray) -> list[np.ndarray]:
    a, b = _random(v.size), _random(v.size)
    return [a, b, gf.sub(gf.sub(v, a), b)]


def _int_parts(s: int) -> list[int]:
    a, b = (int.from_bytes(os.urandom(8), "big") % Q for _ in range(2))
    return [a, b, (s - a - b) % Q]


def verdict(x: np.ndarray, bits: np.ndarray, s: int, proof: NormProof, coin: bytes, rho: np.ndarray) -> bool:
    """Three servers' verdict from additive parts of (x, bits, S, proofs), at a fresh point r."""
    r = int.from_bytes(os.urandom(8), "big") % Q
    sq_layout, bit_layout = Layout.of(x.size), Layout.of(bits.size, vectors=2)
    xs, bs, ss = _parts(x), _parts(bits), _int_parts(s)
    sqs, bps = _parts(proof.squares.flat()), _parts(proof.bits.flat())
    queries = []
    for i in range(3):
        part_proof = NormProof(Proof.of_flat(sq_layout, sqs[i]), Proof.of_flat(bit_layout, bps[i]))
        queries.append(norm_queries(LAYOUT, coin, (xs[i], bs[i], ss[i], part_proof), rho, r, constants=i == 0))
    return decide(LAYOUT, x.size, queries)


def _owner(x_signed: np.ndarray, coin: bytes, rho: np.ndarray, bits: np.ndarray | None = None, s: int | None = None):  # type: ignore[no-untyped-def]
    x = gf.from_signed(x_signed)
    if bits is None:
        bits, s = witness_bits(x, coin, LAYOUT)
    assert s is not None
    blinds = (_random(Layout.of(x.size).blinds), _random(Layout.of(bits.size, vectors=2).blinds))
    return x, bits, s, prove_norm(x, bits, rho, blinds)


def _vector(norm: float, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=D)
    return np.floor(v / np.linalg.norm(v) * norm).astype(np.int64)


def test_an_honest_owner_within_the_bound_is_accepted() -> None:
    for seed in range(3):
        coin, rho = os.urandom(16), _random(LAYOUT.size)
        x, bits, s, proof = _owner(_vector(BOUND - 5, seed), coin, rho)
        assert verdict(x, bits, s, proof, coin, rho)


def _digits(values: list[int], width: int) -> np.ndarray:
    return np.array([[(v % Q >> t) & 1 for t in range(width)] for v in values], dtype=np.uint64).reshape(-1)


def _best_bits(x: np.ndarray, coin: bytes, *, lie_about_s: bool) -> tuple[np.ndarray, int]:
    """A poisoner's bits: of its true projections' offsets (which need not fit) and of a squared
    norm it claims (the true one, or one within the bound)."""
    from asyncmpc.crypto.projections import project_field

    y = [int(v) for v in gf.centred(project_field(coin, LAYOUT.test.k, [x])[0]).tolist()]
    t = LAYOUT.test.threshold
    true = sum(int(v) ** 2 for v in gf.centred(x).tolist()) % Q
    s = BOUND**2 // 2 if lie_about_s else true
    parts = [_digits([v + t for v in y], LAYOUT.width), _digits([t - v for v in y], LAYOUT.width)]
    parts.append(_digits([s, BOUND**2 - s], LAYOUT.norm_width))
    return np.concatenate(parts), s


POISONS = {
    "a gradient scaled by 10^3": lambda: _vector(BOUND - 5) * 1000,
    "just over the bound": lambda: _vector(BOUND + 40),
    "(q - 1) / 2 in one coordinate": None,
}


@pytest.mark.parametrize("name", list(POISONS))
@pytest.mark.parametrize("lie_about_s", [False, True])
def test_a_poisoning_owner_cannot_make_a_witness_and_its_best_attempt_is_refused(name: str, lie_about_s: bool) -> None:
    coin, rho = os.urandom(16), _random(LAYOUT.size)
    make = POISONS[name]
    if make is None:
        x = np.zeros(D, dtype=np.uint64)
        x[9] = (Q - 1) // 2
    else:
        x = gf.from_signed(make())
    with pytest.raises(ValueError, match="over the bound"):
        witness_bits(x, coin, LAYOUT)
    bits, s = _best_bits(x, coin, lie_about_s=lie_about_s)
    blinds = (_random(Layout.of(x.size).blinds), _random(Layout.of(bits.size, vectors=2).blinds))
    assert not verdict(x, bits, s, prove_norm(x, bits, rho, blinds), coin, rho), name


def test_digits_that_recompose_but_are_not_bits_fail_the_bit_proof() -> None:
    coin, rho = os.urandom(16), _random(LAYOUT.size)
    x, bits, s, proof = _owner(_vector(BOUND - 5), coin, rho)
    assert verdict(x, bits, s, proof, coin, rho)
    moved = bits.copy()
    moved[0] = (int(moved[0]) + 2) % Q  # 2 more in digit 0, one less in digit 1: the same value
    moved[1] = (int(moved[1]) - 1) % Q
    _, moved_bits, _, moved_proof = _owner(_vector(BOUND - 5), coin, rho, moved, s)
    assert not verdict(x, moved_bits, s, moved_proof, coin, rho)
