"""A data owner's side of a round (pure): the shares it sends the servers.

``input_shares`` (a ring vector), ``contribution_shares`` (reals, encoded and masked in one
pass), ``share_messages`` (one ``InputShare`` per server, tagged with the request's input id),
``key_messages`` (the stream keys a keyed owner registers). A MAC round's shares are
``protocol.authenticated.authenticated_shares``.
"""

from __future__ import annotations

import os

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.prf import RandomBytes
from asyncmpc.crypto.ring import RingArray, as_ring
from asyncmpc.crypto.rss import InputSharer, SeededShare
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m

__all__ = ["contribution_shares", "input_shares", "key_messages", "share_messages"]

Floats = NDArray[np.float64]


def input_shares(
    params: Params,
    round_no: int,
    x: RingArray,
    random_bytes: RandomBytes = os.urandom,
    sharer: InputSharer | None = None,
) -> list[Send]:
    """A data owner's ``InputShare`` for each of the three servers, for ring vector ``x``.

    ``sharer`` may hold randomness prepared ahead (see ``InputSharer``).
    """
    x = as_ring(x)
    return share_messages(params, round_no, x.shape, (sharer or InputSharer(random_bytes)).share(x, round_no))


def contribution_shares(
    params: Params, round_no: int, values: Floats, sharer: InputSharer, input_id: bytes = b""
) -> list[Send]:
    """``input_shares`` for a vector of reals, encoded to fixed point and masked in one pass;
    ``input_id`` says what the values were computed from (``protocol.releases.input_id``).

    Raises EncodingError naming a NaN, infinite or out-of-range element.
    """
    shares = sharer.share_reals(values, params.frac_bits, max_terms=params.input_terms, round_no=round_no)
    return share_messages(params, round_no, values.shape, shares, input_id)


def key_messages(params: Params, sharer: InputSharer) -> list[Send]:
    """A keyed data owner's ``ShareKeys`` for each server, sent once before its first share:
    server i holds components i and i+1, so server 0 gets (k_0, k_1), server 1 gets k_1 (its
    second component comes as vectors) and server 2 gets k_0."""
    if sharer.keys is None:
        raise ValueError("only a keyed sharer registers keys")
    k0, k1 = (k.key for k in sharer.keys)
    layout = [(k0, k1), (k1, b""), (b"", k0)]
    return [
        Send(server, m.ShareKeys(session=params.session, a=a, b=b))
        for server, (a, b) in zip(params.servers, layout, strict=True)
    ]


def share_messages(
    params: Params, round_no: int, shape: tuple[int, ...], shares: tuple[SeededShare, ...], input_id: bytes = b""
) -> list[Send]:
    """One ``InputShare`` per server, server 0's (two seeds) first: an owner that stops half-way
    has then reached server 0 with seeds only, which a server can still leave out of its sum."""
    out = []
    for server, sh in zip(params.servers, shares, strict=True):
        msg = m.InputShare(session=params.session, round_no=round_no, shape=shape, a=sh.a, b=sh.b, input_id=input_id)
        out.append(Send(server, msg))
    return out
