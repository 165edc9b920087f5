"""A fully linear proof that a shared vector's squares sum to a shared value (pure; the norm
check's exact step, docs/normcheck.md).

Statement: sum_k x_k^2 = S over F_q (Goldilocks), for x in F_q^n; or, for two vectors a and c,
sum_k a_k c_k = S (the bit check: a = rho b and c = b for public random rho, with S the linear
sum_k rho_k b_k, holds for all b in {0, 1}^n and otherwise only with probability 1/q). The
proof is the one of
Boneh, Boyle, Corrigan-Gibbs, Gilboa, Ishai ("Zero-Knowledge Proofs on Secret-Shared Data via
Fully Linear PCPs", CRYPTO 2019, section 4: a ParallelSum of inner-product gadgets), as Prio3's
and PINE's circuits use it:

- x is cut into L chunks of m (the wires), zero-padded. Wire i's polynomial f_i has degree
  below N (N a power of two > L) and takes, on the subgroup H = {w^0, .., w^(N-1)} of order N,
  the values f_i(w^0) = s_i (a random blind), f_i(w^l) = (chunk l)_i for l = 1..L, and 0 after.
- p = sum_i f_i^2 (degree below 2N - 1) is the proof, with the blinds: pi = (s, coefficients
  of p). If x is honest, sum_{l=1..L} p(w^l) = sum_k x_k^2 = S.
- The verifier, at a random r outside H (drawn after the proof is fixed), computes f_i(r) for
  every wire, p(r) and C = sum_{l=1..L} p(w^l) - S. Every one is linear in (x, pi, S), so each
  server computes it on the components it holds and the opened sums are cross-checked like any
  other; then it accepts iff C = 0 and sum_i f_i(r)^2 = p(r).

Soundness: a prover whose S is wrong must send a p other than sum_i f_i^2 (else C != 0); two
distinct polynomials of degree below 2N - 1 agree at a random r with probability at most
(2N - 2) / (q - N), about 2^-52 at n = 10^6 (Schwartz-Zippel; BBCGGI19, Corollary 4.7).
Zero knowledge: r is outside H, so the Lagrange weight of w^0 at r is non-zero and the blind
s_i makes each f_i(r) uniform; p(r) is then determined by them, and C is 0.

Sizes, for n = 10^6: m = 1000 wires, L = 1000 chunks, N = 1024; the proof is m + 2N - 1 field
elements (about 24 KiB), the opened values m + 2. Polynomials are handled by number-theoretic
transforms over H and its double (Goldilocks has 2^32-th roots of unity: 7 generates F_q*).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.goldilocks import FieldArray, Q

__all__ = ["Layout", "Proof", "Query", "accept", "add_queries", "lagrange_at", "ntt", "prove", "prove_many", "query"]

_GENERATOR = 7


def _root(n: int) -> int:
    """A primitive n-th root of unity (n a power of two up to 2^32)."""
    return pow(_GENERATOR, (Q - 1) // n, Q)


def _powers(base: int, count: int) -> FieldArray:
    out = [1] * count
    for i in range(1, count):
        out[i] = out[i - 1] * base % Q
    return np.array(out, dtype=np.uint64)


def ntt(values: FieldArray, *, inverse: bool = False) -> FieldArray:
    """The transform of every row (last axis, a power-of-two length N): evaluations on H from
    coefficients, or (``inverse``) coefficients from evaluations."""
    n = values.shape[-1]
    if n & (n - 1):
        raise ValueError(f"a transform of length {n}, not a power of two")
    bits = n.bit_length() - 1
    order = np.array([int(f"{i:0{bits}b}"[::-1], 2) if bits else 0 for i in range(n)])
    a = np.ascontiguousarray(values[..., order])
    root = _root(n)
    if inverse:
        root = pow(root, Q - 2, Q)
    h = 1
    while h < n:
        twiddles = _powers(pow(root, n // (2 * h), Q), h)
        blocks = a.reshape(*a.shape[:-1], n // (2 * h), 2, h)
        u, v = blocks[..., 0, :], gf.mul(blocks[..., 1, :], twiddles)
        a = np.stack([gf.add(u, v), gf.sub(u, v)], axis=-2).reshape(a.shape)
        h *= 2
    if inverse:
        a = gf.mul(a, np.full_like(a, pow(n, Q - 2, Q)))
    return a


@dataclass(frozen=True, slots=True)
class Layout:
    """How ``vectors`` (1: squares; 2: an inner product) n-vectors are cut: ``wires`` per chunk
    and vector, ``chunks`` chunks, domain size ``n_h``."""

    n: int
    wires: int
    chunks: int
    n_h: int
    vectors: int = 1

    @classmethod
    def of(cls, n: int, vectors: int = 1) -> Layout:
        if vectors not in (1, 2):
            raise ValueError(f"a proof of squares (1 vector) or of an inner product (2), not {vectors}")
        wires = max(1, math.isqrt(n))
        chunks = -(-n // wires)
        return cls(n, wires, chunks, 1 << chunks.bit_length(), vectors)  # n_h > chunks

    @property
    def blinds(self) -> int:
        return self.vectors * self.wires

    @property
    def proof_size(self) -> int:
        return self.blinds + 2 * self.n_h - 1

    def table(self, x: FieldArray, blinds: FieldArray) -> FieldArray:
        """The (vectors x wires, n_h) values of the wire polynomials on H: blinds, chunks, zeros."""
        rows = x.reshape(self.vectors, self.n)
        padded = np.zeros((self.vectors, self.chunks * self.wires), dtype=np.uint64)
        padded[:, : self.n] = rows
        values = np.zeros((self.blinds, self.n_h), dtype=np.uint64)
        values[:, 0] = blinds
        chunked = padded.reshape(self.vectors, self.chunks, self.wires).transpose(0, 2, 1)
        values[:, 1 : self.chunks + 1] = chunked.reshape(self.blinds, self.chunks)
        return values

    def gadget(self, wires: FieldArray) -> FieldArray:
        """The gadget's terms on wire values (rows): f_i^2, or f_i g_i for the two vectors' wires."""
        if self.vectors == 1:
            return gf.mul(wires, wires)
        return gf.mul(wires[: self.wires], wires[self.wires :])


@dataclass(frozen=True, slots=True)
class Proof:
    """The blinds (one per wire) and the coefficients of p (2 n_h - 1)."""

    blinds: FieldArray
    p: FieldArray

    def flat(self) -> FieldArray:
        return np.concatenate([self.blinds, self.p])

    @classmethod
    def of_flat(cls, layout: Layout, flat: FieldArray) -> Proof:
        if flat.shape != (layout.proof_size,):
            raise ValueError(f"a proof of {flat.shape} elements, expected {layout.proof_size}")
        return cls(flat[: layout.blinds], flat[layout.blinds :])


def prove(x: FieldArray, blinds: FieldArray) -> Proof:
    """The proof for ``x`` (n,: S = its sum of squares; or (2, n): S = the rows' inner
    product), with random ``blinds`` (one per wire of each vector, uniform in F_q, from a secure
    source)."""
    return prove_many(x, [blinds])[0]


def prove_many(x: FieldArray, blinds: list[FieldArray]) -> list[Proof]:
    """``prove(x, b)`` for each ``b`` of ``blinds``, with one set of transforms of x: the blinds
    are the wire polynomials' values at H's first point, so each changes them by a multiple of
    one fixed polynomial (the proofs are those ``prove`` makes one by one)."""
    layout = Layout.of(x.shape[-1], 1 if x.ndim == 1 else x.shape[0])
    on_h = layout.table(x, np.zeros(layout.blinds, dtype=np.uint64))  # values on H, blinds aside
    coefficients = ntt(on_h, inverse=True)
    # their values on the coset w H (w a primitive 2 n_h-th root): the odd points of the domain
    # of size 2 n_h, whose even points are H (a transform of size n_h, not one of 2 n_h)
    shift = _powers(_root(2 * layout.n_h), layout.n_h)
    on_coset = ntt(gf.mul(coefficients, np.broadcast_to(shift, coefficients.shape)))
    # a blind b at H's first point adds b L_0, whose coefficients are all 1 / n_h: on the coset,
    # b times the transform of shift / n_h
    unit = ntt(gf.mul(shift, np.full_like(shift, pow(layout.n_h, Q - 2, Q))))
    on_h_terms = gf.total(layout.gadget(on_h).T)  # at H's first point the blinds are the wires' only values
    out = []
    for b in blinds:
        with_coset = gf.add(
            on_coset, gf.mul(np.broadcast_to(b[:, None], on_coset.shape), np.broadcast_to(unit, on_coset.shape))
        )
        terms = np.empty((2 * layout.n_h,), dtype=np.uint64)
        terms[0::2] = on_h_terms
        terms[0] = gf.total(layout.gadget(b[:, None]).T)[0]
        terms[1::2] = gf.total(layout.gadget(with_coset).T)
        out.append(Proof(b, ntt(terms, inverse=True)[: 2 * layout.n_h - 1]))
    return out


def lagrange_at(r: int, n_h: int) -> FieldArray:
    """The Lagrange weights of H's points at r (not in H): L_j(r) = (w^j / N)(r^N - 1)/(r - w^j)."""
    points = _powers(_root(n_h), n_h)
    scale = (pow(r, n_h, Q) - 1) * pow(n_h, Q - 2, Q) % Q
    out = [int(w) * scale % Q * pow((r - int(w)) % Q, Q - 2, Q) % Q for w in points]
    return np.array(out, dtype=np.uint64)


def _dot(a: FieldArray, b: FieldArray) -> int:
    return int(gf.total(gf.mul(a, b)))


@dataclass(frozen=True, slots=True)
class Query:
    """What a server computes from its part of (x, proof, S) at r, and opens: linear in those."""

    wires: FieldArray
    """f_i(r) for every wire of every vector."""
    p_at_r: int
    sum_check: int
    """sum_{l=1..L} p(w^l) - S."""


def query(layout: Layout, x: FieldArray, proof: Proof, s: int, r: int) -> Query:
    """The verifier's linear queries at ``r`` on (x, proof, S), or on one additive part of
    them (the parts' queries add up to the whole's)."""
    weights = lagrange_at(r, layout.n_h)
    values = layout.table(x, proof.blinds)
    wires = gf.total(gf.mul(values, weights[np.newaxis, :]))
    p_at_r = _dot(proof.p, _powers(r, proof.p.size))
    on_h = ntt(np.concatenate([proof.p, np.zeros(1, dtype=np.uint64)])[: 2 * layout.n_h])
    on_chunks = on_h[0 : 2 * (layout.chunks + 1) : 2][1:]  # H's points are the double's even ones
    sum_check = (sum(int(v) for v in on_chunks.tolist()) - s) % Q
    return Query(wires, p_at_r, sum_check)


def add_queries(queries: list[Query]) -> Query:
    """The opened query: the sum of every server's (parts add up, since queries are linear)."""
    wires = queries[0].wires
    for q in queries[1:]:
        wires = gf.add(wires, q.wires)
    return Query(wires, sum(q.p_at_r for q in queries) % Q, sum(q.sum_check for q in queries) % Q)


def accept(layout: Layout, opened: Query) -> bool:
    """The verdict on the opened (summed) queries."""
    terms = layout.gadget(opened.wires)
    return opened.sum_check == 0 and int(gf.total(terms)) == opened.p_at_r
