"""An owner's norm proof in one flow, and the servers' queries on its components (pure; the
round's norm check, docs/normcheck.md).

With ``[protocol] norm_bound``, an owner shares its encoded vector x (signed integers, as
elements of F_q: ``goldilocks``) in three additive components, server i holding components i
and i + 1 (replicated sharing, as in the ring), and with each component a part of its witness
and proofs (``fieldnorm``): the bits of every projection's offsets and of S and B^2 - S, S,
and, for each of two query points, its own proof of the squares and of the bits (a proof opened
at two points would let the servers cancel its blinds). Its randomness is drawn by Fiat-Shamir in
three stages, each from digests of what the owner fixed before it, as PINE does
(Rothblum, Omri, Chen, Talwar, arXiv 2311.10237, section 5; draft-chen-cfrg-vdaf-pine):

1. the projections' seed, from the round's context and the digests of the x components;
2. two weight vectors for the bit check, from that seed and the digests of the witness parts;
3. two query points, from that and the digests of the proofs' parts.

Each server checks the digests of the two components it holds against the owner's list, and
the servers compare their lists (``protocol.normcheck``), so every server derives the same
randomness and an owner cannot give one server other components than it committed to.

Grinding. An owner may re-share and hash again until the randomness suits it; every attempt
costs it a hash of its vector. Hence ``K = 100`` projections (a vector over the bound passes
one attempt with probability at most 2^-100), two bit-check weight vectors (a digit that is not
a bit passes both with probability 1/q^2 per attempt; one would fall at 2^24 cheap attempts,
since the witness is small to hash), and two query points per proof (a false proof passes
both with probability (2N/q)^2, about 2^-100 at d = 10^6: BBCGGI19, Corollary 4.7). So an
owner that makes 2^60 attempts gets a vector over the bound accepted with probability below
2^-40.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.fieldnorm import NormProof, NormQuery, norm_queries, prove_norms, witness_bits
from asyncmpc.crypto.flp import Layout, Proof, Query, accept
from asyncmpc.crypto.goldilocks import FieldArray, Q
from asyncmpc.crypto.normwitness import NormBits
from asyncmpc.crypto.prf import RandomBytes, new_seed
from asyncmpc.crypto.projections import WrapTest, project_field

__all__ = [
    "K_FS",
    "Component",
    "clip_to_bound",
    "NormSpec",
    "Opened",
    "context_of",
    "open_components",
    "prove_input",
    "seeded",
    "verdict",
]

K_FS = 100
"""Projections under Fiat-Shamir (PINE's count: an owner's grinding meets 2^-100 per attempt)."""
DIGEST_BYTES = 32
DIGESTS = 9
"""Per owner: of each component's x, witness part and proofs' part."""
_STAGES = ("x", "witness", "proofs")


@dataclass(frozen=True, slots=True)
class NormSpec:
    """The check's sizes for vectors of ``n`` elements and L2 bound ``bound`` (encoded units)."""

    bound: int
    n: int

    @staticmethod
    def largest_bound() -> int:
        """The largest bound (encoded units) the check serves in F_q: a vector that passes the
        K projections has squared norm below q (``fieldnorm``)."""
        return math.isqrt(Q) // math.ceil(8.6 * 7.0) - 1

    @property
    def bits(self) -> NormBits:
        return NormBits(WrapTest(self.bound, k=K_FS))

    @property
    def squares(self) -> Layout:
        return Layout.of(self.n)

    @property
    def bit_pairs(self) -> Layout:
        return Layout.of(self.bits.size, vectors=2)

    @property
    def witness_size(self) -> int:
        """A component's witness part: its bits, and its part of S."""
        return self.bits.size + 1

    @property
    def payload_size(self) -> int:
        """A component's field elements beside x: witness part, then the three proofs' parts."""
        return self.witness_size + 2 * (self.squares.proof_size + self.bit_pairs.proof_size)

    @property
    def opened_size(self) -> int:
        """The field elements a server opens per component (``open_components``)."""
        per_point = self.squares.blinds + 2 + self.bit_pairs.blinds + 2
        return 2 * per_point + 2 * self.bits.test.k + 2


@dataclass(frozen=True, slots=True)
class Component:
    """Component c of an owner's input: x_c, and its part of the witness and proofs."""

    x: FieldArray
    payload: FieldArray
    seed: bytes | None = None
    """Where x is the expansion of this seed (``seeded``): components 0 and 1, which go to
    the servers as 16 bytes, as the ring sharing's seed components do."""


def seeded(seed: bytes, n: int) -> FieldArray:
    """The component a seed stands for: n elements uniform in F_q from the seed's keystream."""
    return gf.from_seed(seed, n, "norm component")


def clip_to_bound(values: NDArray[np.float64], bound: int, frac_bits: int) -> NDArray[np.float64]:
    """``values`` scaled down, if need be, so that their encoding's L2 norm is at most ``bound``
    (encoded units): rounding adds at most sqrt(d) / 2 to the norm. ValueError if the bound
    leaves no room at this size."""
    room = bound - math.sqrt(values.size) / 2 - 1
    if room <= 0:
        raise ValueError(f"[protocol] norm_bound is too small for a vector of {values.size} elements")
    limit = room / 2**frac_bits
    norm = float(np.linalg.norm(values))
    return values if norm <= limit else values * (limit / norm)


def context_of(session: str, round_no: int, owner: str, input_id: bytes, spec: NormSpec) -> bytes:
    """What the owner's randomness is bound to: the deployment, round, owner, request and sizes."""
    text = f"asyncmpc norm v1\0{session}\0{round_no}\0{owner}\0{spec.n}\0{spec.bound}\0".encode()
    return text + input_id


def _digest(stage: str, *arrays: FieldArray) -> bytes:
    h = hashlib.sha256(f"asyncmpc norm {stage}\0".encode())
    for a in arrays:
        h.update(np.ascontiguousarray(a, dtype=np.uint64).tobytes())
    return h.digest()


def _component_digests(spec: NormSpec, comp: Component) -> tuple[bytes, bytes, bytes]:
    w = spec.witness_size
    return _digest("x", comp.x), _digest("witness", comp.payload[:w]), _digest("proofs", comp.payload[w:])


def _seed(previous: bytes, digests: list[bytes]) -> bytes:
    return hashlib.sha256(previous + b"".join(digests)).digest()


@dataclass(frozen=True, slots=True)
class _Randomness:
    coin: bytes
    rhos: tuple[FieldArray, FieldArray]
    points: tuple[int, int]


def _randomness(spec: NormSpec, context: bytes, digests: tuple[bytes, ...]) -> _Randomness:
    """The three stages' randomness from the owner's ``digests`` (component-major: x, witness,
    proofs of component 0, then of 1, then of 2)."""
    by_stage = [[digests[3 * c + s] for c in range(3)] for s in range(len(_STAGES))]
    coin = _seed(context, by_stage[0])
    rho_seed = _seed(coin, by_stage[1])
    rhos = _rhos(spec, rho_seed)
    point_seed = _seed(rho_seed, by_stage[2])
    return _Randomness(coin[:16], rhos, _points(spec, point_seed[:16]))


def _rhos(spec: NormSpec, seed: bytes) -> tuple[FieldArray, FieldArray]:
    """The bit check's two weight vectors (the owner and every server draw them alike)."""
    return gf.from_seed(seed[:16], spec.bits.size, "rho:0"), gf.from_seed(seed[:16], spec.bits.size, "rho:1")


def _points(spec: NormSpec, seed: bytes) -> tuple[int, int]:
    """Two query points outside both proofs' subgroups (and their doubles)."""
    sizes = (2 * spec.squares.n_h, 2 * spec.bit_pairs.n_h)
    out: list[int] = []
    attempt = 0
    while len(out) < 2:
        r = int(gf.from_seed(seed, 1, f"point:{attempt}")[0])
        attempt += 1
        if all(pow(r, n, Q) != 1 for n in sizes) and r not in out:
            out.append(r)
    return out[0], out[1]


def _split(whole: FieldArray, random_bytes: RandomBytes) -> tuple[FieldArray, FieldArray, FieldArray]:
    c0, c1 = gf.uniform(whole.size, random_bytes), gf.uniform(whole.size, random_bytes)
    return c0, c1, gf.sub(gf.sub(whole, c0), c1)


def _split_seeded(whole: FieldArray, random_bytes: RandomBytes) -> tuple[list[FieldArray], list[bytes]]:
    """x's components: 0 and 1 expanded from fresh seeds (secure randomness), 2 the rest."""
    seeds = [new_seed(random_bytes), new_seed(random_bytes)]
    c0, c1 = (seeded(s, whole.size) for s in seeds)
    return [c0, c1, gf.sub(gf.sub(whole, c0), c1)], seeds


BitsOf = Callable[[FieldArray, bytes, NormBits], tuple[FieldArray, int]]


def prove_input(
    spec: NormSpec,
    context: bytes,
    x: FieldArray,
    random_bytes: RandomBytes = os.urandom,
    bits_of: BitsOf = witness_bits,
) -> tuple[tuple[Component, Component, Component], tuple[bytes, ...]]:
    """The three components of field vector ``x`` with the witness and proofs, and the nine
    digests every server gets. ValueError if x does not pass (over the bound: an honest owner
    clips first). ``bits_of`` computes the witness (tests give a cheating one)."""
    if x.shape != (spec.n,):
        raise ValueError(f"a vector of {x.shape} elements, expected ({spec.n},)")
    xs, seeds = _split_seeded(x, random_bytes)
    x_digests = [_digest("x", c) for c in xs]
    coin = _seed(context, x_digests)[:16]
    bits, s = bits_of(x, coin, spec.bits)
    witness = np.concatenate([bits, np.array([s % Q], dtype=np.uint64)])
    ws = _split(witness, random_bytes)
    w_digests = [_digest("witness", c) for c in ws]
    rho_seed = _seed(_seed(context, x_digests), w_digests)
    rhos = _rhos(spec, rho_seed)
    # one proof per query point, each with its own blinds: a proof opened at two points would
    # let the servers cancel its blinds and learn sqrt(d) linear functionals of x
    blinds = [(_blinds(spec.squares, random_bytes), _blinds(spec.bit_pairs, random_bytes)) for _ in rhos]
    made = prove_norms(x, bits, list(rhos), blinds)
    proofs = np.concatenate([p.flat() for proof in made for p in (proof.squares, proof.bits)])
    ps = _split(proofs, random_bytes)
    comps = tuple(
        Component(xs[c], np.concatenate([ws[c], ps[c]]), seeds[c] if c < len(seeds) else None) for c in range(3)
    )
    digests = tuple(d for c in range(3) for d in (x_digests[c], w_digests[c], _digest("proofs", ps[c])))
    return (comps[0], comps[1], comps[2]), digests


def _blinds(layout: Layout, random_bytes: RandomBytes) -> FieldArray:
    return gf.uniform(layout.blinds, random_bytes)


def _proofs(spec: NormSpec, payload: FieldArray) -> tuple[NormProof, NormProof]:
    """The two (squares, bits) proof pairs of a payload, one per query point."""
    sq, bp = spec.squares.proof_size, spec.bit_pairs.proof_size
    out = []
    for at in (spec.witness_size, spec.witness_size + sq + bp):
        squares = Proof.of_flat(spec.squares, payload[at : at + sq])
        out.append(NormProof(squares, Proof.of_flat(spec.bit_pairs, payload[at + sq : at + sq + bp])))
    return out[0], out[1]


@dataclass(frozen=True, slots=True)
class Opened:
    """What a server opens for component ``index`` of one owner's input (``opened_size`` field
    elements): linear in the component, so the three components' values add up to the whole's."""

    index: int
    values: FieldArray


def check_shapes(spec: NormSpec, comp: Component) -> None:
    if comp.x.shape != (spec.n,) or comp.payload.shape != (spec.payload_size,):
        raise ValueError(
            f"a norm component of {comp.x.shape[0]} + {comp.payload.shape[0]} elements, "
            f"expected {spec.n} + {spec.payload_size}"
        )
    if bool((comp.x >= np.uint64(Q)).any()) or bool((comp.payload >= np.uint64(Q)).any()):
        raise ValueError("a norm component holds a value that is not a field element")


def open_components(
    spec: NormSpec, context: bytes, digests: tuple[bytes, ...], held: dict[int, Component]
) -> list[Opened]:
    """A server's opened values for the components it holds (index -> component), after checking
    each against the owner's digests. ValueError names what is wrong (the owner's fault)."""
    if len(digests) != DIGESTS or any(len(d) != DIGEST_BYTES for d in digests):
        raise ValueError(f"norm digests: expected {DIGESTS} of {DIGEST_BYTES} bytes")
    for index, comp in held.items():
        check_shapes(spec, comp)
        if _component_digests(spec, comp) != digests[3 * index : 3 * index + 3]:
            raise ValueError(f"norm component {index} does not match the digest the owner sent")
    rnd = _randomness(spec, context, digests)
    order = sorted(held)
    projections = project_field(rnd.coin, spec.bits.test.k, [held[i].x for i in order])
    out = []
    for row, index in enumerate(order):
        comp = held[index]
        w = spec.witness_size
        bits, s = comp.payload[: w - 1], int(comp.payload[w - 1])
        queries = [
            norm_queries(
                spec.bits,
                rnd.coin,
                (comp.x, bits, s, proof),
                rho,
                r,
                constants=index == 0,
                projections=projections[row],
            )
            for proof, rho, r in zip(_proofs(spec, comp.payload), rnd.rhos, rnd.points, strict=True)
        ]
        out.append(Opened(index, _flatten(queries)))
    return out


def _flatten(queries: list[NormQuery]) -> FieldArray:
    parts: list[FieldArray] = []
    for q in queries:
        for f in (q.squares, q.bits):
            parts += [f.wires, np.array([f.p_at_r, f.sum_check], dtype=np.uint64)]
    parts.append(queries[0].residues)
    return np.concatenate(parts)


def _unflatten(spec: NormSpec, values: FieldArray) -> tuple[list[tuple[Query, Query]], FieldArray]:
    pairs, at = [], 0
    for _ in range(2):
        found = []
        for layout in (spec.squares, spec.bit_pairs):
            wires = values[at : at + layout.blinds]
            found.append(Query(wires, int(values[at + layout.blinds]), int(values[at + layout.blinds + 1])))
            at += layout.blinds + 2
        pairs.append((found[0], found[1]))
    return pairs, values[at:]


def verdict(spec: NormSpec, opened: dict[int, FieldArray]) -> bool:
    """Whether the input is within the bound, from every component's opened values (index ->
    values, the three components)."""
    if sorted(opened) != [0, 1, 2] or any(v.shape != (spec.opened_size,) for v in opened.values()):
        raise ValueError("a verdict needs the opened values of all three components")
    whole = gf.add(gf.add(opened[0], opened[1]), opened[2])
    pairs, residues = _unflatten(spec, whole)
    proofs_ok = all(accept(spec.squares, sq) and accept(spec.bit_pairs, bq) for sq, bq in pairs)
    return proofs_ok and not residues.any()
