"""The fully linear proof of a sum of squares (``crypto.flp``)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.flp import Layout, Proof, accept, add_queries, ntt, prove, prove_many, query
from asyncmpc.crypto.goldilocks import Q


def _field(values: list[int]) -> np.ndarray:
    return np.array([v % Q for v in values], dtype=np.uint64)


def _random(n: int) -> np.ndarray:
    return gf.from_signed(np.frombuffer(os.urandom(8 * n), dtype=np.int64).copy()) if n else np.zeros(0, np.uint64)


def _r() -> int:
    return int.from_bytes(os.urandom(8), "big") % Q


def _parts(v: np.ndarray, k: int = 3) -> list[np.ndarray]:
    """k additive parts of v over F_q."""
    parts = [_random(v.size) for _ in range(k - 1)]
    last = v
    for part in parts:
        last = gf.sub(last, part)
    return [*parts, last]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, Q - 1), min_size=1, max_size=16).map(lambda v: v + [0] * (16 - len(v))))
def test_a_transform_and_its_inverse_are_the_identity_and_evaluate_the_polynomial(coefficients: list[int]) -> None:
    c = _field(coefficients)
    values = ntt(c)
    assert ntt(values, inverse=True).tolist() == c.tolist()
    w = pow(7, (Q - 1) // 16, Q)
    assert values.tolist() == [sum(a * pow(w, j * k, Q) for k, a in enumerate(coefficients)) % Q for j in range(16)]


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000, 4097])
def test_an_honest_proof_is_accepted_on_shares_and_a_wrong_sum_is_not(n: int) -> None:
    x = gf.from_signed(np.random.default_rng(n).integers(-(2**20), 2**20, n))
    s = sum(int(v) ** 2 for v in gf.centred(x).tolist()) % Q
    layout = Layout.of(n)
    proof = prove(x, _random(layout.wires))
    r = _r()
    assert accept(layout, query(layout, x, proof, s, r))
    # the same on three additive parts of (x, proof, S), as the servers hold them
    x_parts, pi_parts = _parts(x), _parts(proof.flat())
    s_parts = [_r(), _r()]
    s_parts.append((s - sum(s_parts)) % Q)
    queries = [
        query(layout, xp, Proof.of_flat(layout, pp), sp, r)
        for xp, pp, sp in zip(x_parts, pi_parts, s_parts, strict=True)
    ]
    assert accept(layout, add_queries(queries))
    assert not accept(layout, query(layout, x, proof, (s + 1) % Q, r))


def test_a_prover_that_claims_a_smaller_sum_of_squares_is_caught() -> None:
    n = 400
    x = gf.from_signed(np.full(n, 2**30, dtype=np.int64))  # squares sum to 400 * 2^60, wrapping mod q
    true = sum(int(v) ** 2 for v in gf.centred(x).tolist()) % Q
    claimed = 12345
    layout = Layout.of(n)
    honest = prove(x, _random(layout.wires))
    assert not accept(layout, query(layout, x, honest, claimed, _r()))  # the sum check fails
    # a forged p that passes the sum check: add to p a polynomial summing to claimed - true over the chunks
    forged_p = honest.p.copy()
    shift = (claimed - true) * pow(layout.chunks, Q - 2, Q) % Q
    forged_p[0] = (int(forged_p[0]) + shift) % Q  # a constant: each chunk point gains shift
    forged = Proof(honest.blinds, forged_p)
    assert query(layout, x, forged, claimed, _r()).sum_check == 0
    assert not any(accept(layout, query(layout, x, forged, claimed, _r())) for _ in range(20))


def _bit_statement(b: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, int]:
    """(a, c) = (rho b, b) and S = sum rho_k b_k: sum a c = S for bits, and only then."""
    a = gf.mul(rho, b)
    return np.stack([a, b]), int(gf.total(a))


def test_an_inner_product_proof_checks_bits_and_catches_a_digit_that_is_not_one() -> None:
    n = 300
    rng = np.random.default_rng(5)
    b = rng.integers(0, 2, n).astype(np.uint64)
    layout = Layout.of(n, vectors=2)
    rho = _random(n)
    pair, s = _bit_statement(b, rho)
    proof = prove(pair, _random(layout.blinds))
    assert accept(layout, query(layout, pair, proof, s, _r()))
    # on three additive parts of (b, proof): a = rho b is linear in b, so each server forms its own
    b_parts, pi_parts = _parts(b), _parts(proof.flat())
    r = _r()
    queries = []
    for bp, pp in zip(b_parts, pi_parts, strict=True):
        part, s_part = _bit_statement(bp, rho)
        queries.append(query(layout, part, Proof.of_flat(layout, pp), s_part, r))
    assert accept(layout, add_queries(queries))
    for forged in (2, Q - 1, 1 + (1 << 63)):
        bad = b.copy()
        bad[17] = forged
        pair, s = _bit_statement(bad, rho)
        proof = prove(pair, _random(layout.blinds))  # the best an honest-looking prover can do
        assert not accept(layout, query(layout, pair, proof, s, _r())), forged


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_proofs_made_together_are_those_made_one_by_one(n: int) -> None:
    """``prove_many`` shares x's transforms between blinds: each proof is the one ``prove``
    makes with that blind alone (whose proofs the tests above accept and refuse)."""
    for vectors in (1, 2):
        x = gf.uniform(vectors * n, os.urandom).reshape((vectors, n) if vectors == 2 else (n,))
        layout = Layout.of(n, vectors)
        blinds = [gf.uniform(layout.blinds, os.urandom) for _ in range(3)]
        together = prove_many(x, blinds)
        for b, proof in zip(blinds, together, strict=True):
            alone = prove(x, b)
            assert np.array_equal(proof.p, alone.p) and np.array_equal(proof.blinds, alone.blinds)
