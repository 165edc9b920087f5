"""Layer 4: MAC rounds, the rounds that can say which server lied (sans-I/O).

An ordinary round cross-checks the twice-held components of the sum; when two holders of a
component disagree, that says that one of them lied, not which. A MAC round adds what does:
the model owner draws a fresh MAC key (``macs.MacKey``: a secret vector r in F_p^d,
p = 2^61 - 1) and sends it to the data owners only; each owner shares, beside its ring vector
x, the field element t = <r, x> mod p (``authenticated_shares``).
Servers keep each owner's components apart (``AuthenticatedInputs``) and report ``Holding``
with a digest of each owner's two components as received: the model owner compares the two
holders' digests of every component (``mismatches``). A mismatch means that the owner sent its
holders different values or that one holder lies about what it got, and no one can tell
which; the owner stays in the sum (leaving it out of a re-run would open its input as the
difference with the disputed round's sum), is named, and the components it makes differ are
*explained*: a disagreement there blames no server. The servers then sum the contributors'
ring and field components and answer in full; ``protocol.dispute.resolve`` tries the
reconstructions that take each disputed component from one holder or the other and keeps the
one whose MAC verifies, which names the other holder as the cheater where the disagreement is
not explained.

The MAC is information-theoretic (``macs``: a one-time universal-hash MAC, Wegman and Carter,
1981, linear like the MACs of SPDZ, CRYPTO 2012, and in a prime field as SPDZ2k, CRYPTO 2018,
explains for rings with zero divisors): a server that changes its values passes only by
guessing, probability at most 1/p ~ 2^-61 per round; see SECURITY.md. An owner encodes
with ``MAC_HEADROOM`` times less range in a MAC round, so that an honest sum stays within the
field's signed range (``field.MAX_ABS``), which the check needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.field import P, reduce_words
from asyncmpc.macs import MacKey, tag
from asyncmpc.prf import RandomBytes, add_keystreams
from asyncmpc.protocol.events import Send
from asyncmpc.ring import RingArray, encode
from asyncmpc.rss import InputSharer
from asyncmpc.wire import messages as m

__all__ = [
    "DIGEST_BYTES",
    "MAC_HEADROOM",
    "AuthenticatedInputs",
    "MAC_SHAPE",
    "authenticated_shares",
    "mismatches",
]

MAC_HEADROOM = 8
"""A MAC round encodes for ``max_owners * MAC_HEADROOM`` terms: the sum of honest inputs is then
below 2^60, inside [-MAX_ABS, MAX_ABS], where the field check is exact and sound."""
DIGEST_BYTES = 32
MAC_SHAPE = (1,)
"""A MAC share component: one field element (sent as an int64 array)."""

Stream = tuple[bytes, bytes]
RingPart = Stream | RingArray
"""A ring component as a server holds it: a (key, nonce) stream, or a vector."""
FieldPart = RingArray
"""A field component: ``MAC_SHAPE`` field elements (uint64 values sent as int64)."""


def authenticated_shares(
    config: Config,
    round_no: int,
    values: NDArray[np.float64],
    sharer: InputSharer,
    key: MacKey,
    random_bytes: RandomBytes = os.urandom,
    input_id: bytes = b"",
) -> list[Send]:
    """A data owner's ``InputShare`` for each server in a MAC round: the ring shares of its
    encoded ``values`` (as in any round) and replicated field shares of its tag.

    Raises EncodingError naming a NaN, infinite or out-of-range element.
    """
    p = config.protocol
    x = encode(values, p.frac_bits, max_terms=p.max_owners * MAC_HEADROOM)
    ring = sharer.share(x, round_no)
    t0, t1 = (reduce_words(np.frombuffer(random_bytes(8), dtype=np.uint64)).view(np.int64) for _ in range(2))
    t2 = np.array([(tag(x, key) - int(t0[0]) - int(t1[0])) % P], dtype=np.int64)
    fields = [(t0, t1), (t1, t2), (t2, t0)]
    out = []
    for server, sh, (ma, mb) in zip(config.servers, ring, fields, strict=True):
        msg = m.InputShare(
            session=config.session, round_no=round_no, shape=x.shape, a=sh.a, b=sh.b, ma=ma, mb=mb, input_id=input_id
        )
        out.append(Send(server.name, msg))
    return out


@dataclass(frozen=True, slots=True)
class _Held:
    ring: tuple[RingPart, RingPart]
    field: tuple[FieldPart, FieldPart]
    digests: bytes


class AuthenticatedInputs:
    """A server's inputs of one MAC round, kept per owner until the model owner names the
    contributors: an owner left out (its holders' digests differ) is simply not summed.
    Each method returns the reply for the model owner, if any."""

    def __init__(self, session: str, round_no: int, owners: frozenset[str], shape: tuple[int, ...]) -> None:
        self.session = session
        self.round_no = round_no
        self.owners = owners
        self.shape = shape
        self.held: dict[str, _Held] = {}
        self.inputs: dict[str, bytes] = {}
        """Held owner -> the ``input_id`` its share carried."""
        self.reported = False
        self.released: frozenset[str] | None = None
        """The contributors whose sums went out (``protocol.releases``: one set per round)."""

    def check(self, sender: str) -> None:
        """Raises RemoteProtocolError unless ``sender`` may send its share now."""
        if sender not in self.owners:
            raise RemoteProtocolError(f"not an expected owner of round {self.round_no}", peer=sender)
        if sender in self.held:
            raise RemoteProtocolError(f"second input share for round {self.round_no}", peer=sender)
        if self.reported:
            raise RemoteProtocolError(
                f"input share for round {self.round_no} came after its inputs closed", peer=sender
            )

    def add(self, sender: str, ring: tuple[RingPart, RingPart], msg: m.InputShare) -> m.Holding | None:
        """Keep ``sender``'s share (its ring components resolved by the server); ``Holding``
        once every expected owner is in. Raises RemoteProtocolError for field components
        that are missing or not field elements."""
        field: list[FieldPart] = []
        for name, comp in (("ma", msg.ma), ("mb", msg.mb)):
            if not isinstance(comp, np.ndarray) or comp.shape != MAC_SHAPE:
                raise RemoteProtocolError(
                    f"round {self.round_no} is a MAC round: {name} must be {MAC_SHAPE[0]} field element(s)",
                    peer=sender,
                )
            if int(comp.min()) < 0 or int(comp.max()) >= P:
                raise RemoteProtocolError(f"round {self.round_no}: {name} holds values outside F_p", peer=sender)
            field.append(comp)
        fa, fb = field
        self.held[sender] = _Held(ring, (fa, fb), _digest(ring[0], fa) + _digest(ring[1], fb))
        self.inputs[sender] = msg.input_id
        return self.holding() if set(self.held) >= self.owners else None

    def holding(self) -> m.Holding:
        """The owners held, each with its digest pair; inputs close."""
        self.reported = True
        held = tuple(sorted(self.held))
        digests = tuple(self.held[o].digests for o in held)
        return m.Holding(session=self.session, round_no=self.round_no, owners=held, digests=digests)

    def withdraw(self, owners: tuple[str, ...]) -> m.Holding | None:
        """Stop waiting for ``owners`` (those not in yet)."""
        if self.reported:
            return None
        self.owners = self.owners - {o for o in owners if o not in self.held}
        return self.holding() if set(self.held) >= self.owners else None

    def missing(self, sender: str, contributors: tuple[str, ...]) -> list[str]:
        """The contributors whose shares are not held. Raises RemoteProtocolError for an
        ``Aggregate`` that names no owner, or one twice."""
        if not contributors or len(set(contributors)) != len(contributors):
            raise RemoteProtocolError(f"aggregate of round {self.round_no} names no owner, or one twice", peer=sender)
        return [o for o in contributors if o not in self.held]

    def aggregate(self, contributors: tuple[str, ...]) -> m.ResultShare:
        """The sums of the contributors' ring and field components, all in full (the server
        checked ``missing`` and its release rules first)."""
        a, b, ma, mb = self._sums(contributors)
        return m.ResultShare(
            session=self.session, round_no=self.round_no, contributors=contributors, a=a, b=b, ma=ma, mb=mb
        )

    def _sums(self, contributors: tuple[str, ...]) -> tuple[RingArray, RingArray, RingArray, RingArray]:
        ring = [np.zeros(self.shape, dtype=np.int64) for _ in range(2)]
        field = []
        for i in range(2):
            streams: list[Stream] = []
            for owner in contributors:
                part = self.held[owner].ring[i]
                if isinstance(part, tuple):
                    streams.append(part)
                else:
                    np.add(ring[i], part, out=ring[i])
            if streams:
                add_keystreams(ring[i], [k for k, _ in streams], nonces=[n for _, n in streams])
            total = sum(int(self.held[o].field[i][0]) for o in contributors) % P
            field.append(np.array([total], dtype=np.int64))
        return ring[0], ring[1], field[0], field[1]


def _digest(ring: RingPart, field: FieldPart) -> bytes:
    """What a component is, as a holder received it: the same bytes at both of its holders
    exactly when the owner sent both the same (a stream by key and nonce, a vector by value)."""
    h = hashlib.sha256(b"asyncmpc component v1")
    if isinstance(ring, tuple):
        h.update(b"stream" + ring[0] + ring[1])
    else:
        h.update(b"vector")
        h.update(np.ascontiguousarray(ring).data)
    h.update(b"field")
    h.update(np.ascontiguousarray(field).data)
    return h.digest()


def mismatches(
    servers: tuple[str, ...], reports: dict[str, dict[str, bytes]], owners: tuple[str, ...]
) -> dict[str, tuple[int, ...]]:
    """Owner -> the components whose two holders report different digests of its share.

    ``servers`` are the deployment's servers in index order; ``reports[server][owner]`` is
    the ``Holding`` digest pair of a server that reported. Component j is server j's first
    digest and server j-1's second. A mismatch says that the owner sent its two holders
    different values, or that one holder lies about what it got: which, no one can tell.
    """
    out: dict[str, tuple[int, ...]] = {}
    for owner in owners:
        bad = []
        for j, holder in enumerate(servers):
            other = servers[(j - 1) % 3]
            first, second = reports.get(holder, {}).get(owner), reports.get(other, {}).get(owner)
            if first is not None and second is not None and first[:DIGEST_BYTES] != second[DIGEST_BYTES:]:
                bad.append(j)
        if bad:
            out[owner] = tuple(bad)
    return out
