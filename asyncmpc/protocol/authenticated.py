"""MAC rounds, the rounds that can say which server lied (sans-I/O).

An ordinary round cross-checks the twice-held components of the sum; when two holders of a
component disagree, that says that one of them lied, not which. A MAC round adds what does:
the model owner draws a fresh MAC key (``macs.MacKey``: a secret vector r in F_p^d,
p = 2^61 - 1) and sends it to the data owners only; each owner shares, beside its ring vector
x, the field element t = <r, x> mod p (``authenticated_shares``).
A MAC round runs as an ordinary round does (``protocol.server``: running sums, the servers'
agreement, an early answer under a one-time tag key), and adds to it: each server keeps, per
owner, its two field components and a digest of each of the owner's two components as
received (``field_parts``, ``digest_pair``), and answers with the field sums (``ma``, ``mb``)
and the contributors' digests beside its ring sums. The model owner cross-checks as in an
ordinary round and checks the MAC of the reconstruction: a round in which both pass costs an
ordinary round plus the tags. On a mismatch it asks every server for the same contributors in
full and compares the two holders' digests of every component (``mismatches``). A mismatch
means that the owner sent its holders different values or that one holder lies about what it
got, and no one can tell which; the owner stays in the sum (leaving it out of a re-run would
open its input as the difference with the disputed round's sum), is named, and the components
it makes differ are *explained*: a disagreement there blames no server.
``protocol.dispute.resolve`` tries the reconstructions that take each disputed component from
one holder or the other and keeps the one whose MAC verifies, which names the other holder as
the cheater where the disagreement is not explained. With two servers every answer is in full
and the single reconstruction must verify.

The MAC is information-theoretic (``macs``: a one-time universal-hash MAC, Wegman and Carter,
1981, linear like the MACs of SPDZ, CRYPTO 2012, and in a prime field as SPDZ2k, CRYPTO 2018,
explains for rings with zero divisors): a server that changes its values passes only by
guessing, probability at most 1/p ~ 2^-61 per round; see SECURITY.md. An owner encodes
with ``MAC_HEADROOM`` times less range in a MAC round, so that an honest sum stays within the
field's signed range (``field.MAX_ABS``), which the check needs.
"""

from __future__ import annotations

import os

import blake3
import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.field import P, reduce_words
from asyncmpc.crypto.macs import MacKey, tag
from asyncmpc.crypto.prf import RandomBytes
from asyncmpc.crypto.ring import RingArray, encode
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m

__all__ = [
    "DIGEST_BYTES",
    "MAC_HEADROOM",
    "MAC_SHAPE",
    "authenticated_shares",
    "digest_pair",
    "field_parts",
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
    params: Params,
    round_no: int,
    values: NDArray[np.float64],
    sharer: InputSharer,
    key: MacKey,
    random_bytes: RandomBytes = os.urandom,
    input_id: bytes = b"",
    key_id: bytes = b"",
) -> list[Send]:
    """A data owner's ``InputShare`` for each server in a MAC round: the ring shares of its
    encoded ``values`` (as in any round) and replicated field shares of its tag.

    Raises EncodingError naming a NaN, infinite or out-of-range element.
    """
    x = encode(values, params.frac_bits, max_terms=params.max_owners * MAC_HEADROOM)
    ring = sharer.share(x, round_no)
    t0, t1 = (reduce_words(np.frombuffer(random_bytes(8), dtype=np.uint64)).view(np.int64) for _ in range(2))
    t2 = np.array([(tag(x, key) - int(t0[0]) - int(t1[0])) % P], dtype=np.int64)
    fields = [(t0, t1), (t1, t2), (t2, t0)]
    out = []
    for server, sh, (ma, mb) in zip(params.servers, ring, fields, strict=True):
        msg = m.InputShare(
            session=params.session,
            round_no=round_no,
            shape=x.shape,
            a=sh.a,
            b=sh.b,
            ma=ma,
            mb=mb,
            input_id=input_id,
            key_id=key_id,
        )
        out.append(Send(server, msg))
    return out


def field_parts(sender: str, round_no: int, msg: m.InputShare) -> tuple[int, int]:
    """A MAC round's share's two field components (t_i, t_{i+1}). Raises RemoteProtocolError
    when they are missing or not field elements."""
    out = []
    for name, comp in (("ma", msg.ma), ("mb", msg.mb)):
        if not isinstance(comp, np.ndarray) or comp.shape != MAC_SHAPE:
            raise RemoteProtocolError(
                f"round {round_no} is a MAC round: {name} must be {MAC_SHAPE[0]} field element(s)", peer=sender
            )
        value = int(comp[0])
        if not 0 <= value < P:
            raise RemoteProtocolError(f"round {round_no}: {name} holds values outside F_p", peer=sender)
        out.append(value)
    return out[0], out[1]


def digest_pair(ring: tuple[RingPart, RingPart], field: tuple[int, int]) -> bytes:
    """What an owner's two components are, as this holder received them: ``DIGEST_BYTES`` for
    each, the same at both holders of a component exactly when the owner sent both the same."""
    return b"".join(_digest(r, np.array([f], dtype=np.int64)) for r, f in zip(ring, field, strict=True))


def _digest(ring: RingPart, field: FieldPart) -> bytes:
    """What a component is, as a holder received it: the same bytes at both of its holders
    exactly when the owner sent both the same (a stream by key and nonce, a vector by value).

    BLAKE3 (O'Connor, Aumasson, Neves, Wilcox-O'Hearn, 2020; 128-bit collision resistance):
    an owner that could find two vectors with one digest could send its two holders different
    copies unseen. It hashes a vector of 10^6 elements in about 1.3 ms on one core, where
    SHA-256 takes 4.5 ms, and a MAC round hashes each owner's vector at two servers.
    """
    h = blake3.blake3(b"asyncmpc component v2")
    if isinstance(ring, tuple):
        h.update(b"stream" + ring[0] + ring[1])
    else:
        h.update(b"vector")
        h.update(memoryview(np.ascontiguousarray(ring).data).cast("B"))
    h.update(b"field")
    h.update(memoryview(np.ascontiguousarray(field).data).cast("B"))
    return h.digest(DIGEST_BYTES)


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
