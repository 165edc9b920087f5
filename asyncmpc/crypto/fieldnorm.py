"""The norm check in the field: an owner's proof that its field vector is within the bound,
checked by queries linear in the shares (pure; docs/normcheck.md, item 4).

The owner's vector x (signed integers, as elements of F_q, ``goldilocks``) and, after the coin
fixes the K projections (``projections.project_field``), its witness: the bits of y_j + T and
T - y_j for each projection y_j = <r_j, x>, and of S = sum x^2 and B^2 - S (the layout of
``normwitness.NormBits``). Two fully linear proofs (``flp``): sum x^2 = S, and, for weights rho
drawn after the bits are fixed, sum rho_k b_k^2 = sum rho_k b_k, which holds for bits and,
for any digit that is not a bit, only with probability 1/q over rho.

Checked on the shares (every query is linear, so each server computes it on the parts it holds
and the opened sums can be cross-checked by the holders of each component): the two proofs'
queries at a point r drawn after the proofs are fixed, and the recompositions sum_t 2^t b_t
against y_j + T, T - y_j, S and B^2 - S. In the field, 2^(L+1) < q, so the bits put each y_j in
[-T, T] and S in [0, B^2]; with every projection in range, ||x~|| <= 8.6 T except with
probability 2^-K (PINE's lemma in a field: Rothblum, Omri, Chen, Talwar, arXiv 2311.10237), so
(8.6 T)^2 < q means sum x^2 did not wrap mod q and S is the true squared norm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.flp import Layout, Proof, Query, accept, add_queries, prove, prove_many, query
from asyncmpc.crypto.goldilocks import FieldArray, Q
from asyncmpc.crypto.normwitness import NormBits
from asyncmpc.crypto.projections import project_field

__all__ = ["NormProof", "NormQuery", "decide", "norm_queries", "prove_norm", "prove_norms", "witness_bits"]


def _check_field(layout: NormBits) -> None:
    if (8.6 * layout.test.threshold) ** 2 >= Q or 2 ** (max(layout.width, layout.norm_width) + 1) >= Q:
        raise ValueError(f"norm bound {layout.test.bound} is too large to check in F_q")


def witness_bits(x: FieldArray, coin: bytes, layout: NormBits) -> tuple[FieldArray, int]:
    """The owner's bits for its field vector ``x`` under ``coin``, and S. ValueError if x does
    not pass (a projection out of range, or its squared norm over B^2)."""
    _check_field(layout)
    y = [int(v) for v in gf.to_signed(project_field(coin, layout.test.k, [x])[0]).tolist()]
    s = gf.squared_norm(x)
    return layout.bits(y, s).view(np.uint64), s


@dataclass(frozen=True, slots=True)
class NormProof:
    """The two proofs an owner sends (each as ``flp.Proof``)."""

    squares: Proof
    bits: Proof


def _bit_pair(rho: FieldArray, bits: FieldArray) -> FieldArray:
    return np.stack([gf.mul(rho, bits), bits])


def prove_norm(x: FieldArray, bits: FieldArray, rho: FieldArray, blinds: tuple[FieldArray, FieldArray]) -> NormProof:
    """The proofs for ``x`` and its ``bits``, under weights ``rho`` (one per bit, drawn after
    the bits are fixed) and random ``blinds`` (for the squares' and the bits' proofs)."""
    return prove_norms(x, bits, [rho], [blinds])[0]


def prove_norms(
    x: FieldArray, bits: FieldArray, rhos: list[FieldArray], blinds: list[tuple[FieldArray, FieldArray]]
) -> list[NormProof]:
    """``prove_norm`` under each of ``rhos`` with its own ``blinds``: the squares proofs share
    one set of transforms of x (``flp.prove_many``; the same proofs, faster)."""
    squares = prove_many(x, [b[0] for b in blinds])
    return [NormProof(sq, prove(_bit_pair(rho, bits), b[1])) for sq, rho, b in zip(squares, rhos, blinds, strict=True)]


@dataclass(frozen=True, slots=True)
class NormQuery:
    """What a server opens for one owner: the proofs' queries and the recomposition residues."""

    squares: Query
    bits: Query
    residues: FieldArray


def norm_queries(
    layout: NormBits,
    coin: bytes,
    part: tuple[FieldArray, FieldArray, int, NormProof],
    rho: FieldArray,
    r: int,
    *,
    constants: bool,
    projections: FieldArray | None = None,
) -> NormQuery:
    """A server's queries on one additive part (x, bits, S, proofs) of an owner's input; the
    constants (T, B^2) go into exactly one part. The parts' queries add up to the whole's.
    ``projections``: the part's projections under ``coin``, when computed already."""
    x, bits, s, proof = part
    k, w, ws = layout.test.k, layout.width, layout.norm_width
    y = project_field(coin, k, [x])[0] if projections is None else projections
    pair = _bit_pair(rho, bits)
    squares = query(Layout.of(x.size), x, proof.squares, s, r)
    bit_query = query(Layout.of(bits.size, vectors=2), pair, proof.bits, int(gf.total(pair[0])), r)
    weights = np.array([1 << t for t in range(max(w, ws))], dtype=np.uint64)
    v = bits[: k * w].reshape(k, w)
    u = bits[k * w : 2 * k * w].reshape(k, w)
    sb, eb = bits[2 * k * w : 2 * k * w + ws], bits[2 * k * w + ws :]
    t = layout.test.threshold if constants else 0
    b2 = layout.test.bound**2 if constants else 0

    def value(digits: FieldArray) -> FieldArray:
        return gf.total(gf.mul(digits, np.broadcast_to(weights[: digits.shape[-1]], digits.shape).copy()))

    const = np.full(k, t, dtype=np.uint64)
    residues = np.concatenate(
        [
            gf.sub(value(v), gf.add(y, const)),
            gf.sub(value(u), gf.sub(const, y)),
            np.array([(int(value(sb)) - s) % Q, (int(value(eb)) - (b2 - s)) % Q], dtype=np.uint64),
        ]
    )
    return NormQuery(squares, bit_query, residues)


def decide(layout: NormBits, n: int, parts: list[NormQuery]) -> bool:
    """The verdict on the opened queries (every server's, summed): both proofs accepted and every
    recomposition zero."""
    residues = parts[0].residues
    for p in parts[1:]:
        residues = gf.add(residues, p.residues)
    squares = accept(Layout.of(n), add_queries([p.squares for p in parts]))
    bits = accept(Layout.of(layout.size, vectors=2), add_queries([p.bits for p in parts]))
    return squares and bits and not residues.any()
