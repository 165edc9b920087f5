"""Zero knowledge of what the servers open (``crypto.normproof``): the attack of a review, which
worked while one squares proof was opened at both query points with one blind per wire: the two
opened wire values cancel the blind and leave sqrt(d) linear functionals of x for every server.
With a proof (and its own blinds) per point, what the attack computes is unrelated to x."""

from __future__ import annotations

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.flp import lagrange_at
from asyncmpc.crypto.goldilocks import Q
from asyncmpc.crypto.normproof import NormSpec, _randomness, _unflatten, context_of, open_components, prove_input


def _server_view(spec: NormSpec, ctx: bytes, x: np.ndarray):
    """What every server ends up with: the digests and the opened values of all three components."""
    comps, digests = prove_input(spec, ctx, gf.from_signed(x))
    opened = {}
    for s in range(3):
        for o in open_components(spec, ctx, digests, {i: comps[i] for i in (s, (s + 1) % 3)}):
            opened[o.index] = o.values
    return digests, opened


def _leak(spec: NormSpec, ctx: bytes, digests, opened):
    """Per wire i: f_i(r1)/L0(r1) - f_i(r2)/L0(r2) = sum_l chunk_{l,i} c_l  (blind eliminated),
    and the public coefficients c_l."""
    whole = gf.add(gf.add(opened[0], opened[1]), opened[2])
    pairs, _ = _unflatten(spec, whole)
    r1, r2 = _randomness(spec, ctx, digests).points
    lay = spec.squares
    l1, l2 = [list(map(int, lagrange_at(r, lay.n_h))) for r in (r1, r2)]
    i1, i2 = pow(l1[0], Q - 2, Q), pow(l2[0], Q - 2, Q)
    coef = [(l1[j] * i1 - l2[j] * i2) % Q for j in range(1, lay.chunks + 1)]
    w1, w2 = pairs[0][0].wires, pairs[1][0].wires
    leak = [(int(w1[i]) * i1 - int(w2[i]) * i2) % Q for i in range(lay.wires)]
    return leak, coef


def test_one_element_vector_is_revealed_to_the_servers() -> None:
    spec = NormSpec(bound=1000, n=1)
    ctx = context_of("s", 1, "o", b"", spec)
    secret = np.array([-537], dtype=np.int64)
    digests, opened = _server_view(spec, ctx, secret)
    leak, coef = _leak(spec, ctx, digests, opened)
    recovered = leak[0] * pow(coef[0], Q - 2, Q) % Q
    recovered = recovered - Q if recovered > Q // 2 else recovered
    assert recovered != -537, "the servers recovered the owner's vector exactly"


def test_servers_learn_one_linear_functional_per_wire() -> None:
    spec = NormSpec(bound=2**16, n=400)  # 20 wires x 20 chunks
    ctx = context_of("s", 1, "o", b"", spec)
    x = np.random.default_rng(1).integers(-50, 50, size=spec.n)
    digests, opened = _server_view(spec, ctx, x)
    leak, coef = _leak(spec, ctx, digests, opened)
    lay = spec.squares
    chunks = np.zeros(lay.chunks * lay.wires, dtype=object)
    chunks[: spec.n] = [int(v) % Q for v in x]
    table = chunks.reshape(lay.chunks, lay.wires)  # chunk l, wire i
    truth = [sum(int(table[c, i]) * coef[c] for c in range(lay.chunks)) % Q for i in range(lay.wires)]
    # a guess about x (here, the truth) is confirmed exactly; an independent view would match w.p. 1/q
    assert leak != truth, f"{lay.wires} linear functionals of x are revealed to every server"


def test_two_equal_norm_vectors_are_distinguished() -> None:
    spec = NormSpec(bound=2**16, n=4)  # 2 wires x 2 chunks
    ctx = context_of("s", 1, "o", b"", spec)
    a = np.array([3, 4, 0, 0], dtype=np.int64)
    b = np.array([0, 0, 3, 4], dtype=np.int64)  # same norm, same verdict
    digests, opened = _server_view(spec, ctx, b)
    leak, coef = _leak(spec, ctx, digests, opened)

    def predicted(v):
        t = np.array([int(e) % Q for e in v], dtype=object).reshape(2, 2)
        return [sum(int(t[c, i]) * coef[c] for c in range(2)) % Q for i in range(2)]

    assert not (leak == predicted(b) and leak != predicted(a)), "the server tells a from b"
