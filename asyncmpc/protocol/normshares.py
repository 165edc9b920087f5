"""A data owner's side of a norm-checked round (pure): its contribution clipped to the bound,
encoded, shared in F_q with its norm proof (``crypto.normproof``) and its signature of the
proof's digests (``crypto.signing``), one ``InputShare`` per server; in a MAC round also with
field shares of its tag (as ``protocol.authenticated``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.field import P, reduce_words
from asyncmpc.crypto.macs import MacKey, tag
from asyncmpc.crypto.normproof import Component, NormSpec, clip_to_bound, context_of, prove_input
from asyncmpc.crypto.prf import RandomBytes
from asyncmpc.crypto.ring import RingArray, encode
from asyncmpc.crypto.rss import Seed
from asyncmpc.crypto.signing import statement
from asyncmpc.protocol.authenticated import MAC_HEADROOM
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.params import Params
from asyncmpc.wire import messages as m

__all__ = ["norm_shares"]


def norm_shares(
    params: Params,
    owner: str,
    round_no: int,
    values: NDArray[np.float64],
    input_id: bytes = b"",
    mac_key: MacKey | None = None,
    key_id: bytes = b"",
    random_bytes: RandomBytes = os.urandom,
    nonce: bytes = b"",
    sign: Callable[[bytes], bytes] | None = None,
) -> list[Send]:
    """This owner's ``InputShare`` for each server: components (x_i, x_{i+1}) of its clipped,
    encoded ``values`` in F_q, their parts of the witness and proofs, the nine digests, and
    (with ``sign``: a deployment with TLS) its signature of them under the round's ``nonce``.

    Raises EncodingError naming a NaN, infinite or out-of-range element."""
    terms = params.input_terms * (MAC_HEADROOM if mac_key is not None else 1)
    x: RingArray = encode(clip_to_bound(values, params.norm_bound, params.frac_bits), params.frac_bits, max_terms=terms)
    spec = NormSpec(params.norm_bound, x.size)
    context = context_of(params.session, round_no, owner, input_id, spec)
    comps, digests = prove_input(spec, context, gf.from_signed(x.reshape(-1)), random_bytes)
    signature = b"" if sign is None else sign(statement(params.session, round_no, owner, nonce, input_id, digests))
    tags: list[tuple[RingArray | None, RingArray | None]] = [(None, None)] * 3
    if mac_key is not None:
        t0, t1 = (reduce_words(np.frombuffer(random_bytes(8), dtype=np.uint64)).view(np.int64) for _ in range(2))
        t2 = np.array([(tag(x, mac_key) - int(t0[0]) - int(t1[0])) % P], dtype=np.int64)
        tags = [(t0, t1), (t1, t2), (t2, t0)]
    out = []
    for i, server in enumerate(params.servers):
        first, second = comps[i], comps[(i + 1) % 3]
        msg = m.InputShare(
            session=params.session,
            round_no=round_no,
            shape=values.shape,
            a=_wire(first, values.shape),
            b=_wire(second, values.shape),
            ma=tags[i][0],
            mb=tags[i][1],
            input_id=input_id,
            key_id=key_id,
            norm_a=first.payload.view(np.int64),
            norm_b=second.payload.view(np.int64),
            norm_digests=digests,
            norm_signature=signature,
        )
        out.append(Send(server, msg))
    return out


def _wire(comp: Component, shape: tuple[int, ...]) -> Seed | RingArray:
    """A component as it goes to a server: its seed (components 0 and 1), or the vector."""
    return Seed(comp.seed) if comp.seed is not None else comp.x.view(np.int64).reshape(shape)
