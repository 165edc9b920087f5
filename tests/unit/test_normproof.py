"""The one-flow norm proof (``crypto.normproof``): an owner's three components, each server's
opened values on the two it holds, and the verdict; honest owners pass, poisoning ones fail,
and a component that does not match its digest is refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.fieldnorm import witness_bits
from asyncmpc.crypto.goldilocks import FieldArray
from asyncmpc.crypto.normproof import Component, NormSpec, context_of, open_components, prove_input, verdict
from asyncmpc.crypto.normwitness import NormBits

SPEC = NormSpec(bound=2**16, n=300)
CONTEXT = context_of("s", 1, "owner-0", b"", SPEC)


def _checked(spec: NormSpec, comps: tuple[Component, ...], digests: tuple[bytes, ...]) -> bool:
    """Three servers (server i holds components i and i + 1) open; every duplicated component's
    values agree; the verdict on one value per component."""
    opened: dict[int, list[FieldArray]] = {0: [], 1: [], 2: []}
    for server in range(3):
        held = {i: comps[i] for i in (server, (server + 1) % 3)}
        for o in open_components(spec, CONTEXT, digests, held):
            opened[o.index].append(o.values)
    for values in opened.values():
        assert len(values) == 2 and np.array_equal(values[0], values[1])
    return verdict(spec, {i: v[0] for i, v in opened.items()})


def _vector(norm: float, n: int = SPEC.n, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=n)
    return np.rint(v / np.linalg.norm(v) * norm).astype(np.int64)


def test_an_honest_owner_passes() -> None:
    comps, digests = prove_input(SPEC, CONTEXT, gf.from_signed(_vector(0.9 * SPEC.bound)))
    assert _checked(SPEC, comps, digests)


def _cheat(claim: int) -> object:
    """A witness for a vector that is not there: the projections clamped into range, S claimed."""

    def bits_of(x: FieldArray, coin: bytes, layout: NormBits) -> tuple[FieldArray, int]:
        from asyncmpc.crypto.projections import project_field

        t = layout.test.threshold
        y = [max(-t, min(t, int(v))) for v in gf.centred(project_field(coin, layout.test.k, [x])[0]).tolist()]
        t, b2, w, ws = layout.test.threshold, layout.test.bound**2, layout.width, layout.norm_width
        rows = [(v + t, w) for v in y] + [(t - v, w) for v in y] + [(claim, ws), (max(0, b2 - claim), ws)]
        bits = [(v >> i) & 1 for v, width in rows for i in range(width)]
        return np.array(bits, dtype=np.uint64), claim

    return bits_of


@pytest.mark.parametrize(
    "name, x",
    [
        ("scaled 10^3", _vector(0.9 * SPEC.bound) * 1000),
        ("just over B", _vector(1.02 * SPEC.bound)),
        ("wraps: q // 2 in one coordinate", np.array([2**62] + [0] * (SPEC.n - 1), dtype=np.int64)),
    ],
)
@pytest.mark.parametrize("claim", ["true", "small"])
def test_a_poisoning_owner_fails(name: str, x: np.ndarray, claim: str) -> None:
    s = int(sum(int(v) ** 2 for v in x.tolist())) if claim == "true" else SPEC.bound**2 // 4
    comps, digests = prove_input(SPEC, CONTEXT, gf.from_signed(x), bits_of=_cheat(s))  # type: ignore[arg-type]
    assert not _checked(SPEC, comps, digests), name


def test_an_honest_prover_refuses_a_vector_over_the_bound() -> None:
    with pytest.raises(ValueError, match="bound"):
        prove_input(SPEC, CONTEXT, gf.from_signed(_vector(1.5 * SPEC.bound)))


def test_a_component_unlike_its_digest_is_refused() -> None:
    comps, digests = prove_input(SPEC, CONTEXT, gf.from_signed(_vector(0.5 * SPEC.bound)))
    other = Component(gf.add(comps[1].x, np.ones(SPEC.n, dtype=np.uint64)), comps[1].payload)
    with pytest.raises(ValueError, match="component 1 does not match"):
        open_components(SPEC, CONTEXT, digests, {1: other, 2: comps[2]})


def test_another_context_draws_other_randomness() -> None:
    """A proof made for one round does not pass in another (the context is in every seed)."""
    comps, digests = prove_input(SPEC, CONTEXT, gf.from_signed(_vector(0.5 * SPEC.bound)))
    later = context_of("s", 2, "owner-0", b"", SPEC)
    opened = {}
    for server in (0, 2):
        held = {i: comps[i] for i in (server, (server + 1) % 3)}
        opened.update({o.index: o.values for o in open_components(SPEC, later, digests, held)})
    assert not verdict(SPEC, opened)


@settings(max_examples=25, deadline=None)
@given(st.floats(min_value=0.5, max_value=1.5), st.integers(min_value=0, max_value=2**16))
def test_the_verdict_is_the_plaintext_norm_at_the_boundary(ratio: float, seed: int) -> None:
    """Against the plaintext squared norm: within B^2 passes (an honest witness), over fails
    (the honest prover refuses; a cheating witness claiming B^2 is refused by the servers)."""
    spec = NormSpec(bound=2**12, n=64)
    x = _vector(ratio * spec.bound, spec.n, seed)
    within = int(sum(int(v) ** 2 for v in x.tolist())) <= spec.bound**2
    field = gf.from_signed(x)
    if within:
        comps, digests = prove_input(spec, context_of("s", 1, "o", b"", spec), field)
    else:
        with pytest.raises(ValueError):
            witness_bits(field, b"\0" * 16, spec.bits)
        comps, digests = prove_input(
            spec,
            context_of("s", 1, "o", b"", spec),
            field,
            bits_of=_cheat(spec.bound**2),  # type: ignore[arg-type]
        )
    global CONTEXT
    saved, CONTEXT = CONTEXT, context_of("s", 1, "o", b"", spec)
    try:
        assert _checked(spec, comps, digests) == within
    finally:
        CONTEXT = saved


def test_the_config_allows_exactly_the_bounds_the_check_serves() -> None:
    from asyncmpc.config.parse import LARGEST_NORM_BOUND

    assert NormSpec.largest_bound() == LARGEST_NORM_BOUND
    assert NormSpec(LARGEST_NORM_BOUND, 8).bits.test.bound == LARGEST_NORM_BOUND  # the test takes it
