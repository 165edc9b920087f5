"""A server's norm checks (``protocol.normcheck``), without sockets: three servers' reports on
an owner decide alike; a lying server or an owner that gives servers different digest lists
makes a dispute, never a verdict."""

from __future__ import annotations

import numpy as np
import pytest

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.normproof import NormSpec, context_of, open_components, prove_input
from asyncmpc.protocol.normcheck import NormChecks, Outcome, Report

SPEC = NormSpec(bound=2**14, n=200)
CONTEXT = context_of("s", 1, "o", b"", SPEC)
ALL = frozenset({0, 1, 2})


def _reports(x: np.ndarray) -> dict[int, Report]:
    comps, digests = prove_input(SPEC, CONTEXT, gf.from_signed(x))
    out = {}
    for s in range(3):
        held = {i: comps[i] for i in (s, (s + 1) % 3)}
        out[s] = Report(digests, {o.index: o.values for o in open_components(SPEC, CONTEXT, digests, held)})
    return out


def _small() -> np.ndarray:
    return np.full(SPEC.n, 10, dtype=np.int64)


def test_every_server_accepts_an_honest_owner_once_all_reported() -> None:
    reports = _reports(_small())
    for me in range(3):
        checks = NormChecks(SPEC, me, ALL)
        outcomes = [checks.hear("o", s, reports[s]) for s in (me, (me + 1) % 3, (me + 2) % 3)]
        assert outcomes == [None, None, Outcome.ACCEPT]


def test_a_server_that_lies_about_its_values_makes_a_dispute_naming_it() -> None:
    reports = _reports(_small())
    liar = 2
    forged = dict(reports[liar].opened)
    forged[0] = gf.add(forged[0], np.ones_like(forged[0]))
    reports[liar] = Report(reports[liar].digests, forged)
    # server 0 holds component 0 beside the liar; server 1 holds neither copy, so it names both
    for me, named in ((0, (liar,)), (1, (0, liar))):
        checks = NormChecks(SPEC, me, ALL)
        for s in range(3):
            outcome = checks.hear("o", s, reports[s])
        assert outcome is Outcome.DISPUTE and checks.suspects == named


def test_different_digest_lists_make_a_dispute() -> None:
    reports = _reports(_small())
    reports[1] = Report(tuple(reversed(reports[1].digests)), reports[1].opened)
    checks = NormChecks(SPEC, 0, ALL)
    for s in range(3):
        outcome = checks.hear("o", s, reports[s])
    assert outcome is Outcome.DISPUTE and checks.suspects == (1,)


def test_a_second_report_and_a_report_of_other_components_are_refused() -> None:
    reports = _reports(_small())
    checks = NormChecks(SPEC, 0, ALL)
    checks.hear("o", 1, reports[1])
    with pytest.raises(ValueError, match="second"):
        checks.hear("o", 1, reports[1])
    with pytest.raises(ValueError, match="components"):
        checks.hear("o", 2, reports[1])


def test_two_servers_decide_alone() -> None:
    reports = _reports(_small())
    checks = NormChecks(SPEC, 0, frozenset({0, 1}))
    assert checks.hear("o", 0, reports[0]) is None
    assert checks.hear("o", 1, reports[1]) is Outcome.ACCEPT
    assert checks.hear("o", 2, reports[2]) is None  # not a server of the round


def test_two_servers_leave_out_without_naming_when_the_verdict_fails() -> None:
    """In a round on two servers one component rests on the peer's values alone: a peer that
    lies there makes the verdict fail, so a failed verdict leaves the owner out unnamed."""
    reports = _reports(_small())
    forged = dict(reports[1].opened)
    forged[2] = gf.add(forged[2], np.ones_like(forged[2]))  # component 2: only server 1 of the two holds it
    checks = NormChecks(SPEC, 0, frozenset({0, 1}))
    assert checks.hear("o", 0, reports[0]) is None
    assert checks.hear("o", 1, Report(reports[1].digests, forged)) is Outcome.LEAVE
