"""The model owner's verdict on a MAC round's answers (pure).

Every server answered in full: its two ring components of the sum and its two field
components of the sum's MAC. Component j is held by server j (its ``a``) and server j-1 (its
``b``). Where the two holders agree on a component (ring and field part), an honest one
vouches for it, since at most one server lies. Where they disagree, the lie is in one of two
versions: ``resolve`` builds the reconstruction that leaves out each suspect's versions, checks
each against the MAC (``macs.verify``: <r, z> = T in F_p, z in range), and keeps the one
that verifies. The suspect left out by the verified reconstruction is the cheater: the other
one's versions made a reconstruction that the MAC refused, which an honest server's versions
(the true sums of the owners' consistent shares) never do. So a server is named only when a
reconstruction without it verifies and one with its versions does not.

When nothing verifies (an owner's MAC shares were wrong as well, or more than one server
lied), or two different reconstructions do (probability ~2^-61), the round yields nothing and
no one is named. Nor is anyone named when the components that disagree are *explained*: an
owner's two holders reported different digests of its share there, so the owner may have sent
them different values (its input is then the version its own MAC tag verifies). With two
servers the once-held components have no second version: the single reconstruction must
verify, or the round yields nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from asyncmpc.crypto.field import P
from asyncmpc.crypto.goldilocks import combine
from asyncmpc.crypto.macs import MacKey, verify
from asyncmpc.crypto.ring import RingArray
from asyncmpc.crypto.rss import N_SERVERS, suspects
from asyncmpc.protocol.answers import Digests
from asyncmpc.protocol.outcome import RoundResult
from asyncmpc.wire import messages as m

__all__ = ["Answer", "MacPolicy", "Verdict", "full_verdict", "resolve", "tagged_mac_ok"]


@dataclass(frozen=True, slots=True)
class Answer:
    """Server ``server``'s full answer: ring components (a, b) and field components (ma, mb)
    of the MAC sum, each one field element."""

    server: int
    a: RingArray
    b: RingArray
    ma: int
    mb: int


@dataclass(frozen=True, slots=True)
class Verdict:
    total: RingArray | None
    """The verified (or vouched-for) sum; None when the round cannot yield one."""
    agreed: bool
    """Three servers answered and every component's two holders agreed."""
    cheater: int | None = None
    """The server whose versions the MAC refused, when a reconstruction without it verified."""
    reason: str = ""
    disputed: tuple[int, ...] = ()
    """The components whose two holders' versions differ."""


_Version = tuple[RingArray, int]


def resolve(
    answers: list[Answer], key: MacKey, explained: frozenset[int] = frozenset(), field: bool = False
) -> Verdict:
    """The sum the answers prove, and who lied if someone did (see the module docstring).

    ``explained`` are components whose holders may disagree without lying: an owner's
    holders reported different digests of its share there (``authenticated.mismatches``).
    Where only such components disagree, the reconstruction that verifies is kept and no one
    is named."""
    versions: dict[int, dict[int, _Version]] = {j: {} for j in range(N_SERVERS)}
    for ans in answers:
        versions[ans.server][ans.server] = (ans.a, ans.ma)
        versions[(ans.server + 1) % N_SERVERS][ans.server] = (ans.b, ans.mb)
    if any(not v for v in versions.values()):
        raise ValueError(f"need the answers of two servers, got {sorted(a.server for a in answers)}")
    bad = [j for j, v in versions.items() if len(v) == 2 and not _same(*v.values())]
    if not bad:
        total = _pick(versions, leave_out=None, field=field)
        if verify(total[0], key, total[1]):
            return Verdict(total[0], len(answers) == N_SERVERS)
        if len(answers) == N_SERVERS:
            # every component is vouched for by an honest holder: the sum is right, a MAC share is not
            return Verdict(total[0], True, reason="the MAC failed though every component agreed")
        return Verdict(None, False, reason="the sum of two servers' shares failed its MAC")
    verified: list[tuple[int, RingArray]] = []
    for suspect in suspects(bad):
        z, t = _pick(versions, leave_out=suspect, field=field)
        if verify(z, key, t):
            verified.append((suspect, z))
    if len(verified) == 1:
        cheater, z = verified[0]
        if set(bad) <= explained:
            why = f"components {bad} disagree where an owner's holders got different shares; kept the one that verified"
            return Verdict(z, False, reason=why)
        return Verdict(z, False, cheater, f"server {cheater}'s result shares failed the MAC")
    what = "no reconstruction" if not verified else "more than one reconstruction"
    return Verdict(None, False, reason=f"components {bad} disagree and {what} verified", disputed=tuple(bad))


def _same(x: _Version, y: _Version) -> bool:
    return bool(x[1] == y[1] and np.array_equal(x[0], y[0]))


def _pick(versions: dict[int, dict[int, _Version]], leave_out: int | None, field: bool) -> tuple[RingArray, int]:
    """The sum from one version of each component, none from ``leave_out`` where there is a choice."""
    chosen = []
    for j in range(N_SERVERS):
        held = versions[j]
        others = [v for s, v in sorted(held.items()) if s != leave_out]
        chosen.append(others[0] if others else next(iter(held.values())))
    return combine([c[0] for c in chosen], field), sum(c[1] for c in chosen) % P


def tagged_mac_ok(total: RingArray, results: Sequence[m.ResultShare], key: MacKey) -> bool:
    """A MAC round's tagged answers from the three servers (in index order), whose ring sum
    ``total`` passed the cross-check: every field component's two holders agree, and the MAC
    of ``total`` verifies."""
    ma = [int(r.ma[0]) for r in results if r.ma is not None]
    mb = [int(r.mb[0]) for r in results if r.mb is not None]
    fields_agree = len(ma) == len(mb) == N_SERVERS and all(mb[j] == ma[(j + 1) % 3] for j in range(3))
    return fields_agree and verify(total, key, sum(ma) % P)


def full_verdict(
    round_no: int,
    results: Mapping[str, m.ResultShare],
    servers: tuple[str, ...],
    key: MacKey,
    digests: Digests,
    contributors: tuple[str, ...],
    field: bool = False,
) -> RoundResult:
    """What a MAC round's answers in full (``results``, by server; ``servers`` every server in
    index order) prove: the verified sum, the cheater if one lied, and the owner to blame
    when the components that disagree are where its holders reported different digests."""
    answers = []
    for s, r in results.items():
        assert r.b is not None and r.ma is not None and r.mb is not None
        answers.append(Answer(servers.index(s), r.a, r.b, int(r.ma[0]), int(r.mb[0])))
    verdict = resolve(answers, key, explained=digests.explained, field=field)
    culprit = ""
    if verdict.total is None and len(answers) == N_SERVERS and verdict.disputed:
        culprit = digests.culprit(verdict.disputed)
    return RoundResult(
        round_no,
        verdict.total,
        contributors,
        verdict.agreed,
        verdict.reason,
        tuple(s for s in servers if s in results),
        mac=True,
        cheater="" if verdict.cheater is None else servers[verdict.cheater],
        inconsistent=digests.inconsistent,
        culprit=culprit,
    )


class MacPolicy:
    """When the model owner runs MAC rounds (sans-I/O): after a dispute, for a window of
    rounds that doubles with every dispute (``window``, 2 ``window``, 4 ``window``, ...),
    until a cheater is excluded; or always.

    A cheater that lies only in ordinary rounds is never named (a MAC round would name it),
    but each of its lies now buys it fewer re-runs: over T rounds at most about log2(T / window)
    + 1. An honest fault that looks like a dispute (a share lost on the way to one server)
    costs one re-run and a window of MAC rounds, not MAC rounds for the rest of the session.
    """

    def __init__(self, always: bool = False, window: int = 10) -> None:
        self.always = always
        self.window = window
        self.disputes = 0
        self.remaining = 0
        """MAC rounds still due from the last dispute."""

    def next_is_mac(self) -> bool:
        """Whether the next round is a MAC round (counts it against the window)."""
        if self.always:
            return True
        if self.remaining > 0:
            self.remaining -= 1
            return True
        return False

    def disputed(self) -> None:
        """A round's cross-check failed or its servers disagreed: the re-run and the window."""
        self.disputes += 1
        self.remaining = 1 + self.window * 2 ** (self.disputes - 1)

    def excluded(self) -> None:
        """The cheater is out: the two servers left are honest."""
        self.disputes = self.remaining = 0
