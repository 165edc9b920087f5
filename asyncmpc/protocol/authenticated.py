"""Layer 4: MAC rounds, the rounds that can say which server lied (sans-I/O).

An ordinary round cross-checks the twice-held components of the sum; when two holders of a
component disagree, that says that one of them lied, not which. A MAC round adds what does:
the model owner draws a fresh key alpha in F_p (p = 2^61 - 1) and sends it to the data owners
only; each owner shares, beside its ring vector x, the field vector t = alpha * x
(``authenticated_shares``), seed-compressed as x is, from fresh seeds. Servers keep each
owner's components apart (``AuthenticatedInputs``) and report ``Holding`` with a digest of
each owner's two components as received: the model owner compares the two holders' digests
of every component and leaves out, and names, an owner that sent its holders different
values, before any sum is taken (so an inconsistent owner is never taken for a lying
server). The servers then sum the contributors' ring and field components and answer in
full; ``protocol.dispute.resolve`` tries the reconstructions that take each disputed
component from one holder or the other and keeps the one whose MAC verifies, which names the
other holder as the cheater.

The MAC is information-theoretic (``macs``): a server that changes its values passes only by
guessing alpha, probability at most 1/(p - 1) ~ 2^-61 per round. It follows the MACs of SPDZ
(Damgard, Pastro, Smart, Zakarias, CRYPTO 2012) with the check moved to a prime field as
SPDZ2k (Cramer et al., CRYPTO 2018) explains for rings with zero divisors; see SECURITY.md.
An owner encodes with ``MAC_HEADROOM`` times less range in a MAC round, so that an honest sum
stays within the field's signed range (``field.MAX_ABS``), which the check needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.field import FieldArray, P, f_add, f_sub, reduce_words
from asyncmpc.macs import authenticate
from asyncmpc.prf import NONCE_BYTES, RandomBytes, add_keystreams, expand, new_seed
from asyncmpc.protocol.events import Send
from asyncmpc.ring import RingArray, encode
from asyncmpc.rss import Component, InputSharer, Keyed, Seed
from asyncmpc.wire import messages as m

__all__ = [
    "DIGEST_BYTES",
    "MAC_HEADROOM",
    "AuthenticatedInputs",
    "authenticated_shares",
    "field_stream",
    "inconsistent_owners",
]

MAC_HEADROOM = 8
"""A MAC round encodes for ``max_owners * MAC_HEADROOM`` terms: the sum of honest inputs is then
below 2^60, inside [-MAX_ABS, MAX_ABS], where the field check is exact and sound."""
DIGEST_BYTES = 32
FIELD_NONCE = b"\x02" + bytes(NONCE_BYTES - 1)
"""The nonce of field streams: a seed's field stream is never its ring stream."""

Stream = tuple[bytes, bytes]
RingPart = Stream | RingArray
"""A ring component as a server holds it: a (key, nonce) stream, or a vector."""
FieldPart = Seed | RingArray
"""A field component: a seed, or a vector of field elements (uint64 values as int64)."""


def field_stream(seed: Seed, shape: tuple[int, ...]) -> FieldArray:
    """The field vector a seed stands for (uniform up to 2^-61, see ``field.reduce_words``)."""
    return reduce_words(expand(seed.key, shape, FIELD_NONCE))


def authenticated_shares(
    config: Config,
    round_no: int,
    values: NDArray[np.float64],
    sharer: InputSharer,
    alpha: int,
    random_bytes: RandomBytes = os.urandom,
) -> list[Send]:
    """A data owner's ``InputShare`` for each server in a MAC round: the ring shares of its
    encoded ``values`` (as in any round) and seed-compressed field shares of alpha * x.

    Raises EncodingError naming a NaN, infinite or out-of-range element.
    """
    p = config.protocol
    x = encode(values, p.frac_bits, max_terms=p.max_owners * MAC_HEADROOM)
    ring = sharer.share(x, round_no)
    t = authenticate(x, alpha)
    s0, s1 = Seed(new_seed(random_bytes)), Seed(new_seed(random_bytes))
    t2 = f_sub(f_sub(t, field_stream(s0, x.shape)), field_stream(s1, x.shape)).view(np.int64)
    fields: list[tuple[Component, Component]] = [(s0, s1), (s1, t2), (t2, s0)]
    out = []
    for server, sh, (ma, mb) in zip(config.servers, ring, fields, strict=True):
        msg = m.InputShare(session=config.session, round_no=round_no, shape=x.shape, a=sh.a, b=sh.b, ma=ma, mb=mb)
        out.append(Send(server.name, msg))
    return out


@dataclass(frozen=True, slots=True)
class _Held:
    ring: tuple[RingPart, RingPart]
    field: tuple[FieldPart, FieldPart]
    digests: bytes


class AuthenticatedInputs:
    """A server's inputs of one MAC round, kept per owner until the model owner names the
    contributors: an owner left out (its holders' digests differ) is simply not summed."""

    def __init__(self, owners: frozenset[str], shape: tuple[int, ...]) -> None:
        self.owners = owners
        self.shape = shape
        self.held: dict[str, _Held] = {}
        self.reported = False

    def accept(self, sender: str, round_no: int, ring: tuple[RingPart, RingPart], msg: m.InputShare) -> None:
        """Keep ``sender``'s share (its ring components resolved by the server). Raises
        RemoteProtocolError for field components that are missing or not field elements."""
        field: list[FieldPart] = []
        for name, comp in (("ma", msg.ma), ("mb", msg.mb)):
            if comp is None or isinstance(comp, Keyed):
                raise RemoteProtocolError(
                    f"round {round_no} is a MAC round: {name} must be a seed or a vector", peer=sender
                )
            if isinstance(comp, np.ndarray):
                if comp.shape != self.shape:
                    raise RemoteProtocolError(
                        f"round {round_no}: {name} of shape {comp.shape}, expected {self.shape}", peer=sender
                    )
                if comp.size and (int(comp.min()) < 0 or int(comp.max()) >= P):
                    raise RemoteProtocolError(f"round {round_no}: {name} holds values outside F_p", peer=sender)
            field.append(comp)
        fa, fb = field
        digests = _digest(ring[0], fa) + _digest(ring[1], fb)
        self.held[sender] = _Held(ring, (fa, fb), digests)

    def digests(self, owners: tuple[str, ...]) -> tuple[bytes, ...]:
        return tuple(self.held[o].digests for o in owners)

    def sums(self, contributors: tuple[str, ...]) -> tuple[RingArray, RingArray, RingArray, RingArray]:
        """(a, b, ma, mb): the sums of the contributors' ring and field components."""
        ring = [np.zeros(self.shape, dtype=np.int64) for _ in range(2)]
        field = [np.zeros(self.shape, dtype=np.uint64) for _ in range(2)]
        for i in range(2):
            streams: list[Stream] = []
            for owner in contributors:
                held = self.held[owner]
                part = held.ring[i]
                if isinstance(part, tuple):
                    streams.append(part)
                else:
                    np.add(ring[i], part, out=ring[i])
                fpart = held.field[i]
                value = field_stream(fpart, self.shape) if isinstance(fpart, Seed) else fpart.view(np.uint64)
                field[i] = f_add(field[i], value)
            if streams:
                add_keystreams(ring[i], [k for k, _ in streams], nonces=[n for _, n in streams])
        return ring[0], ring[1], field[0].view(np.int64), field[1].view(np.int64)


def _digest(ring: RingPart, field: FieldPart) -> bytes:
    """What a component is, as a holder received it: the same bytes at both of its holders
    exactly when the owner sent both the same (a stream by key and nonce, a vector by value)."""
    h = hashlib.sha256(b"asyncmpc component v1")
    if isinstance(ring, tuple):
        h.update(b"stream" + ring[0] + ring[1])
    else:
        h.update(b"vector")
        h.update(np.ascontiguousarray(ring).data)
    if isinstance(field, Seed):
        h.update(b"seed" + field.key)
    else:
        h.update(b"vector")
        h.update(np.ascontiguousarray(field).data)
    return h.digest()


def inconsistent_owners(
    servers: tuple[str, ...], reports: dict[str, dict[str, bytes]], owners: tuple[str, ...]
) -> tuple[str, ...]:
    """Owners whose two holders of some component report different digests.

    ``servers`` are the deployment's servers in index order; ``reports[server][owner]`` is
    the ``Holding`` digest pair of a server that reported. Component j is server j's first
    digest and server j-1's second.
    """
    bad = []
    for owner in owners:
        for j, holder in enumerate(servers):
            other = servers[(j - 1) % 3]
            first, second = reports.get(holder, {}).get(owner), reports.get(other, {}).get(owner)
            if first is not None and second is not None and first[:DIGEST_BYTES] != second[DIGEST_BYTES:]:
                bad.append(owner)
                break
    return tuple(bad)
