"""Proof that a server lied in a norm check, and the model owner's judge of it (pure).

In a norm-checked round every server signs the values it opens (``NormOpened``) with its TLS
certificate's key (``crypto.signing.opened_statement``), over the owner's signed statement of
its digests. Two holders of one component that open different values on it cannot both be
honest; the third server cannot tell which lied, and the round is disputed. The honest holder
can: it sends the model owner ``NormEvidence``, the other holder's signed message and its own
copy of the component, with the component's norm part. The model owner (``NormCourt``)
checks

1. the accused's signature over its message (so the message is the accused's own),
2. the owner's signature over the digests the accused opened under (else the accused
   forwarded a list the owner never signed: convicted on that alone),
3. that the copy matches the owner's digest of that component (else the evidence proves
   nothing: the sender's copy is not the owner's), and recomputes the component's opened
   values (``normproof.open_components``): values unlike the accused's convict it.

Nothing but the accused's own signed words and the owner's signed digests convicts, so an
honest server cannot be framed (digests are collision-resistant, and the opened values are a
function of the component and public randomness). The signature binds each array's shape and
bytes on its own, and the court takes only values shaped as a server opens them (an attack
review framed an honest server with its own message, its values reshaped or split otherwise;
``tests/protocol/test_normcourt.py``). Each sender is heard once per round and accused: one
proof convicts, and a hearing costs a re-opening of the component. Signatures are checked under
every key the player presented this session (as seen at each round's opening): an owner that
reconnects with a re-issued certificate mid-round leaves lists signed under its old key, which
must not look unsigned (found by the same review). What the model owner sees of the owner is
one additive component of its sharing in F_q, uniform on its own, from a round that yielded
no sum (any two of the three components are jointly uniform too). Without TLS there are no
keys, no signatures and no evidence: a dispute stays a dispute.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from asyncmpc.crypto.normproof import Component, NormSpec, context_of, open_components
from asyncmpc.crypto.signing import opened_statement, statement, verify
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m

__all__ = ["NormCourt", "opened_digest"]

_KEPT = 8
"""Norm-checked rounds whose evidence is still heard (a dispute's evidence may arrive after the
round ended, during its re-run)."""


def opened_digest(session: str, nonce: bytes, server: str, msg: m.NormOpened | m.NormEvidence) -> bytes:
    """What ``server`` signs of its ``NormOpened`` (or what ``NormEvidence`` says it sent)."""
    owner_statement = statement(session, msg.round_no, msg.owner, nonce, msg.input_id, tuple(msg.digests))
    values = [
        part for arr in (msg.a, msg.b) for part in (repr(arr.shape).encode(), np.ascontiguousarray(arr).tobytes())
    ]
    return opened_statement(session, msg.round_no, server, nonce, msg.owner, owner_statement, *values)


class NormCourt:
    """The model owner's judge of ``NormEvidence``, across the rounds of a session."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.keys: Mapping[str, bytes] = {}
        """Players' public keys (``Transport.peer_keys``)."""
        self._rounds: dict[int, tuple[bytes, int]] = {}
        self.convicted: dict[str, str] = {}
        """Servers proved to have lied, with why (taken by the caller, which excludes them)."""
        self._seen: dict[str, list[bytes]] = {}
        """Every key each player presented, as seen when norm-checked rounds opened."""
        self._heard: set[tuple[str, int, str]] = set()
        """(sender, round, accused) heard once: one proof convicts, so a sender's second piece
        of evidence against one server in one round costs nothing (each costs a re-opening)."""

    def opened(self, round_no: int, nonce: bytes, size: int) -> None:
        """A norm-checked round opened with ``nonce``, of ``size`` elements."""
        self._rounds[round_no] = (nonce, size)
        for player, key in self.keys.items():
            seen = self._seen.setdefault(player, [])
            if key not in seen:
                seen.append(key)
        self._heard = {k for k in self._heard if k[1] != round_no}  # a round number opened again
        for old in sorted(self._rounds)[:-_KEPT]:
            del self._rounds[old]
            self._heard = {k for k in self._heard if k[1] != old}

    def hear(self, sender: str, ev: m.NormEvidence) -> str | None:
        """``sender``'s evidence; the accused's name if it proves a lie (recorded in ``convicted``)."""
        key = (sender, ev.round_no, ev.accused)
        if (
            ev.accused == sender
            or ev.accused in self.convicted
            or key in self._heard
            or ev.round_no not in self._rounds
        ):
            return None
        self._heard.add(key)
        why = self._guilty(ev)
        if why is None:
            return None
        self.convicted[ev.accused] = f"round {ev.round_no}: {why} (shown by {sender})"
        return ev.accused

    def _keys_of(self, player: str) -> list[bytes]:
        """Every key ``player`` presented this session (as seen when rounds opened, and now): an
        owner that reconnects with a re-issued certificate leaves lists signed under its old
        key, which honest servers verified then."""
        now = self.keys.get(player)
        seen = self._seen.get(player, [])
        return seen if now is None or now in seen else [*seen, now]

    def _guilty(self, ev: m.NormEvidence) -> str | None:
        known = self._rounds.get(ev.round_no)
        accused = self.params.index(ev.accused)
        accused_keys, owner_keys = self._keys_of(ev.accused), self._keys_of(ev.owner)
        if known is None or accused is None or not accused_keys or not owner_keys:
            return None
        nonce, size = known
        spec = NormSpec(self.params.norm_bound, size)
        if not ev.a.shape == ev.b.shape == (spec.opened_size,):
            return None  # not values as a server opens them: malformed, not proof
        session = self.params.session
        said = opened_digest(session, nonce, ev.accused, ev)
        if not any(verify(key, said, ev.server_signature) for key in accused_keys):
            return None  # not the accused's own words
        owner_statement = statement(session, ev.round_no, ev.owner, nonce, ev.input_id, tuple(ev.digests))
        if not any(verify(key, owner_statement, ev.signature) for key in owner_keys):
            return f"it forwarded norm digests of {ev.owner} that {ev.owner} did not sign"
        c = ev.component
        if ev.x is None or ev.payload is None or c not in (accused, (accused + 1) % 3):
            return None
        context = context_of(session, ev.round_no, ev.owner, ev.input_id, spec)
        copy = Component(ev.x.reshape(-1).view(np.uint64), ev.payload.reshape(-1).view(np.uint64))
        try:
            (values,) = (o.values for o in open_components(spec, context, tuple(ev.digests), {c: copy}))
        except ValueError:
            return None  # the sender's copy is not the component the owner signed for
        claimed = (ev.a if c == accused else ev.b).view(np.uint64)
        if np.array_equal(claimed, values):
            return None
        return f"its norm values on component {c} of {ev.owner} are not those of the component {ev.owner} signed for"
