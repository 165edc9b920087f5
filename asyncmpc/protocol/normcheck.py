"""A server's norm checks of one round (sans-I/O, beside the sum's ``RunningSums``).

Every server of the round opens, for each owner, its values on the two components it holds
(``crypto.normproof.open_components``) and sends them, with the owner's digest list, to the
round's other servers (``NormOpened``). A server decides an owner once it has every round
server's report (its own among them):

- every report carries the same digest list, and the two holders of each component opened the
  same values: the verdict (``normproof.verdict``) is computed from the same data by every
  honest server, so they agree: ``ACCEPT`` (the owner's components go into the sum) or
  ``REJECT`` (left out, and named to the model owner);
- two different digest lists, both signed by the owner (``crypto.signing``: the servers know
  its certificate's key from their TLS handshakes): the owner equivocated, which every honest
  server can see from the same reports: ``REJECT``;
- otherwise ``DISPUTE``: a server lied (a list the owner did not sign, or values unlike the
  other holder's), or, without TLS, the owner gave servers different lists. No server decides
  on values it cannot check, so a lying server gets neither a poisoned input in nor an honest
  owner out; it can only make the round disputed (as a wrong sum does). The suspects are the
  peers whose list (unsigned) or values differ from this server's own.

With two servers (the third is down) every component is covered, one of them twice, and one
component each rests on one server's values: a failed verdict there is ``LEAVE`` (the owner
is left out, not named), as at close, since one lying server could have made it; a poisoned
input still needs a poisoning owner and a lying server together to pass (``SECURITY.md``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from asyncmpc.crypto.goldilocks import FieldArray, Q
from asyncmpc.crypto.normproof import NormSpec, verdict
from asyncmpc.wire import messages as m

__all__ = ["NormChecks", "Outcome", "Report"]


class Outcome(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    DISPUTE = "dispute"
    LEAVE = "leave"
    """Decided at close on two servers' reports, and not within the bound: left out, not named
    (a component only the peer reported is unchecked, so the peer alone could have made it so)."""


@dataclass(frozen=True, slots=True)
class Report:
    """One server's report on one owner: the owner's digests and the opened values, by component."""

    digests: tuple[bytes, ...]
    opened: dict[int, FieldArray]
    signed: bool = False
    """The owner's signature of ``digests`` verified (False also where there is no TLS)."""
    input_id: bytes = b""
    """The owner's input id the values were opened under (part of what it signed)."""
    message: m.NormOpened | None = None
    """A peer's message as it came (with its signature: evidence, ``protocol.normcourt``)."""


@dataclass(slots=True)
class _Owner:
    reports: dict[int, Report] = field(default_factory=dict)
    decided: Outcome | None = None


class NormChecks:
    """Server ``me``'s checks in a round on ``servers`` (indices, ``me`` among them)."""

    def __init__(self, spec: NormSpec, me: int, servers: frozenset[int], nonce: bytes = b"") -> None:
        self.spec = spec
        self.me = me
        self.servers = servers
        self.nonce = nonce
        """The round's nonce, under which owners sign their digests."""
        self._owners: dict[str, _Owner] = {}
        self.told_waiting = False
        """Whether this server told the model owner it waits only for peers' values."""
        self.suspects: tuple[int, ...] = ()
        self.proofs: tuple[tuple[int, int | None], ...] = ()
        """After a ``DISPUTE``: (peer, component) for each peer this server can prove lied: on a
        component both hold (its values differ from this server's), or (None) by forwarding a
        list the owner did not sign, where this server's own list is signed."""
        """After a ``DISPUTE``: the peers whose reports differ from this server's."""

    def message(self, owner: str, server: int) -> m.NormOpened | None:
        """``server``'s message on ``owner`` as it came (None: none, or this server's own)."""
        entry = self._owners.get(owner)
        report = None if entry is None else entry.reports.get(server)
        return None if report is None else report.message

    def reported(self, owner: str, server: int) -> bool:
        entry = self._owners.get(owner)
        return entry is not None and server in entry.reports

    def hear(self, owner: str, server: int, report: Report) -> Outcome | None:
        """``server``'s report (this server's own included) on ``owner``; the outcome once every
        round server reported (then once only), else None. A second report from one server is
        ignored (ValueError: its sender broke the protocol)."""
        if server not in self.servers:
            return None
        entry = self._owners.setdefault(owner, _Owner())
        if server in entry.reports:
            raise ValueError(f"a second norm report on {owner}")
        expected = {server, (server + 1) % 3}
        if set(report.opened) != expected or any(v.shape != (self.spec.opened_size,) for v in report.opened.values()):
            raise ValueError(f"a norm report on {owner} with the wrong components or sizes")
        if any(np.any(v >= np.uint64(Q)) for v in report.opened.values()):
            raise ValueError(f"a norm report on {owner} with values outside F_q")
        entry.reports[server] = report
        if entry.decided is not None or set(entry.reports) != set(self.servers):
            return None
        entry.decided = self._decide(entry.reports, partial=len(self.servers) < 3)
        return entry.decided

    def decided(self, owner: str) -> Outcome | None:
        entry = self._owners.get(owner)
        return None if entry is None else entry.decided

    def close(self, owner: str) -> Outcome | None:
        """Inputs close before every round server reported on ``owner``: decide on the reports in
        if this server's is among them and they cover all three components (two servers'), as
        a round on two servers decides (then once only); else None. A failed verdict is then
        ``LEAVE``: one of the components rests on the peer's word alone, so a malicious peer
        could have made an honest owner fail; accepting on it lets nothing in that a single
        malicious player could not (a poisoned input needs a poisoning owner as well)."""
        entry = self._owners.get(owner)
        if entry is None or entry.decided is not None or self.me not in entry.reports:
            return None
        if {c for r in entry.reports.values() for c in r.opened} != {0, 1, 2}:
            return None
        outcome = self._decide(entry.reports, partial=True)
        entry.decided = outcome
        return outcome

    def _decide(self, reports: dict[int, Report], partial: bool = False) -> Outcome:
        """The outcome on ``reports``; ``partial``: not every round server's (at close), so a
        failed verdict may rest on a component only a peer reported, and is ``LEAVE``."""
        own = reports[self.me]
        differ = {s: r for s, r in reports.items() if (r.input_id, r.digests) != (own.input_id, own.digests)}
        if own.signed and any(r.signed for r in differ.values()):
            return Outcome.REJECT  # two lists the owner signed: it equivocated (proof, not a verdict)
        suspects = set(differ)
        proofs: list[tuple[int, int | None]] = [(s, None) for s, r in differ.items() if own.signed and not r.signed]
        values: dict[int, list[tuple[int, FieldArray]]] = {0: [], 1: [], 2: []}
        for s, r in reports.items():
            for c, v in r.opened.items():
                values[c].append((s, v))
        for c, held in values.items():
            if len(held) == 2 and not np.array_equal(held[0][1], held[1][1]):
                mine = [v for s, v in held if s == self.me]
                suspects |= {s for s, _ in held if s != self.me} if mine else {s for s, _ in held}
                if mine and own.signed:
                    proofs += [(s, c) for s, _ in held if s != self.me and s not in differ]
        if suspects:
            self.suspects = tuple(sorted(suspects))
            self.proofs = tuple(proofs)
            return Outcome.DISPUTE
        if verdict(self.spec, {c: held[0][1] for c, held in values.items()}):
            return Outcome.ACCEPT
        return Outcome.LEAVE if partial else Outcome.REJECT
