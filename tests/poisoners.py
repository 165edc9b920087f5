"""Poisoning data owners, for tests and the poisoning benchmark: the real data owner with its
computation changed (production code reads no switch).

``cheating_bits(claim)`` is a witness for a vector that is not within the bound: every
projection clamped into [-T, T] and S claimed, so the recompositions or the proofs fail at the
servers. ``install(kind)`` patches this process's data owner:

- ``scale:F``: every training contribution times F (e.g. -1000: scaled and sign-flipped);
- ``fit:F``: every training contribution times F, then, under ``norm_bound``, scaled down to
  fit the bound and proved as an honest owner does: the servers accept it every round;
- ``over``: a contribution of L2 norm just over the bound (1.01 B);
- ``wrap``: a contribution of 2^32 encoded units in its first element (its square is 2^64,
  0 in Z_2^64 and small mod q without the projections' check);
- ``digests``: an honest contribution, but the first server gets another digest of the
  component it does not hold, signed as the true list is (the owner equivocates).

Under ``norm_bound`` the owner then shares its vector unclipped with a cheating witness (but
``fit:F``: clipped, with a true one); without it, as any owner shares (``clip_norm`` applies
before the scaling, so ``fit:F`` is then ``scale:F``). ``poisoned_contribution`` is the patched
contribution alone, for a test that runs every owner in one process and poisons only some.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.goldilocks import FieldArray
from asyncmpc.crypto.normwitness import NormBits
from asyncmpc.crypto.projections import project_field

BitsOf = Callable[[FieldArray, bytes, NormBits], tuple[FieldArray, int]]
Contribution = Callable[[Any, Any, Any], np.ndarray]
"""``roles.data_owner._contribution``: (workload, request, rows) to the vector it shares."""


def cheating_bits(claim: int) -> BitsOf:
    """A witness claiming squared norm ``claim``, with every projection clamped into range."""

    def bits_of(x: FieldArray, coin: bytes, layout: NormBits) -> tuple[FieldArray, int]:
        t, w, ws = layout.test.threshold, layout.width, layout.norm_width
        y = [max(-t, min(t, int(v))) for v in gf.centred(project_field(coin, layout.test.k, [x])[0]).tolist()]
        rows = [(v + t, w) for v in y] + [(t - v, w) for v in y]
        rows += [(claim, ws), (max(0, layout.test.bound**2 - claim), ws)]
        return np.array([(v >> i) & 1 for v, width in rows for i in range(width)], dtype=np.uint64), claim

    return bits_of


def _poisoned(kind: str, bound: int, frac_bits: int) -> Callable[[np.ndarray], np.ndarray]:
    name, _, arg = kind.partition(":")
    if name in ("scale", "fit"):
        factor = float(arg)
        return lambda v: v * factor
    if name == "over":
        limit = 1.01 * bound / 2**frac_bits

        def over(v: np.ndarray) -> np.ndarray:
            d = np.random.default_rng(7).normal(size=v.size)
            return d / np.linalg.norm(d) * limit

        return over
    if name == "wrap":

        def wrap(v: np.ndarray) -> np.ndarray:
            out = np.zeros_like(v)
            out[0] = 2.0**32 / 2**frac_bits
            return out

        return wrap
    raise ValueError(f"unknown poison {kind!r}: scale:F, fit:F, over or wrap")


def equivocating_shares(shares: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    """``normshares.norm_shares`` giving the first server another digest of the one component
    it does not hold, signed like the true list: two lists the owner signed for one round."""
    from asyncmpc.crypto.signing import statement

    def lying(params: Any, owner: str, round_no: int, *args: Any, **kwargs: Any) -> list[Any]:
        out = shares(params, owner, round_no, *args, **kwargs)
        first = out[0].msg
        digests = list(first.norm_digests)
        digests[6] = bytes(b ^ 0xFF for b in digests[6])  # component 2's x: the first server holds 0 and 1
        sign = kwargs.get("sign")
        nonce = kwargs.get("nonce", b"")
        signature = (
            b""
            if sign is None
            else sign(statement(params.session, round_no, owner, nonce, first.input_id, tuple(digests)))
        )
        changed = dataclasses.replace(first, norm_digests=tuple(digests), norm_signature=signature)
        return [dataclasses.replace(out[0], msg=changed), *out[1:]]

    return lying


def poisoned_contribution(
    kind: str, bound: int, frac_bits: int, honest: Contribution, chosen: Callable[[Any], bool] = lambda work: True
) -> Contribution:
    """``honest`` (``roles.data_owner._contribution``) with every training contribution changed
    as ``kind`` (``scale:F``, ``fit:F``, ``over`` or ``wrap``) where ``chosen`` picks the owner's
    workload (every one by default: a process holds one owner)."""
    from asyncmpc.wire import messages as m

    change = _poisoned(kind, max(bound, 1 << frac_bits), frac_bits)

    def contribution(work: Any, msg: Any, rows: Any) -> np.ndarray:
        v = honest(work, msg, rows)
        return change(v) if isinstance(msg, m.ModelUpdate) and chosen(work) else v

    return contribution


def install(kind: str, bound: int, frac_bits: int) -> None:
    """Patch this process's data owner to poison every training round as ``kind`` (or, as
    ``digests``, to equivocate on its norm digests: ``equivocating_shares``)."""
    from asyncmpc.protocol import normshares
    from asyncmpc.roles import data_owner

    if kind == "digests":
        data_owner.norm_shares = equivocating_shares(data_owner.norm_shares)  # type: ignore[assignment]
        return
    poisoned = poisoned_contribution(kind, bound, frac_bits, data_owner._contribution)
    data_owner._contribution = poisoned  # type: ignore[assignment]
    if kind.partition(":")[0] == "fit":
        return  # clipped to the bound and proved by the honest code
    normshares.clip_to_bound = lambda values, bound, frac_bits: values  # type: ignore[assignment]
    claim = bound**2 // 4
    normshares.prove_input = functools.partial(normshares.prove_input, bits_of=cheating_bits(claim))  # type: ignore[assignment]
