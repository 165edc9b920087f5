"""A coin the compute servers toss together, which no one of them can predict or bias (pure).

The norm check draws its projections (and its proof's challenges) from a coin that must be
fixed only after every data owner's shares are: an owner that knew the projections could craft
a vector that passes them, and a malicious server could tell it. Commit, then reveal (Blum,
"Coin flipping by telephone", CRYPTO 1981): each server of the round draws 32 secret bytes,
sends their hash once it holds its inputs, and reveals them once it has every other server's
hash; the coin is the hash of the context and every server's bytes, in server order. A server
that reveals bytes other than those it committed to is named; one that never reveals stalls the
round, which the round's deadlines end (it is left out like any silent server). Before the
reveals, the coin is unpredictable to any coalition that lacks one honest server's bytes
(SHA-256 as a random oracle); afterwards no one can change it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from asyncmpc.crypto.prf import RandomBytes
from asyncmpc.errors import RemoteProtocolError

__all__ = ["COIN_BYTES", "CoinToss"]

COIN_BYTES = 32


def _commit(context: bytes, server: int, value: bytes) -> bytes:
    return hashlib.sha256(b"asyncmpc coin commitment\0" + context + bytes([server]) + value).digest()


@dataclass
class CoinToss:
    """One server's part in one coin among ``servers`` (indices), under ``context`` (the
    session and round, say), with ``me`` among them."""

    me: int
    servers: tuple[int, ...]
    context: bytes
    random_bytes: RandomBytes = os.urandom
    _own: bytes = field(init=False, repr=False)
    _digests: dict[int, bytes] = field(init=False, default_factory=dict, repr=False)
    _values: dict[int, bytes] = field(init=False, default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.me not in self.servers:
            raise ValueError(f"server {self.me} is not among {self.servers}")
        self._own = self.random_bytes(COIN_BYTES)
        self._digests[self.me] = _commit(self.context, self.me, self._own)
        self._values[self.me] = self._own

    def commitment(self) -> bytes:
        """What this server sends first: the hash of its bytes."""
        return self._digests[self.me]

    def committed(self, server: int, digest: bytes) -> None:
        """Server ``server``'s commitment; RemoteProtocolError for a second, different one."""
        self._known(server)
        if len(digest) != len(self._digests[self.me]):
            raise RemoteProtocolError(f"a coin commitment of {len(digest)} bytes", peer=str(server))
        if self._digests.setdefault(server, digest) != digest:
            raise RemoteProtocolError("committed to two coins in one round", peer=str(server))

    def ready_to_reveal(self) -> bool:
        """Whether every server's commitment is in: only then may this server reveal."""
        return all(s in self._digests for s in self.servers)

    def reveal(self) -> bytes:
        """This server's bytes; ValueError before every commitment is in."""
        if not self.ready_to_reveal():
            raise ValueError("a coin is revealed only once every server has committed")
        return self._own

    def revealed(self, server: int, value: bytes) -> None:
        """Server ``server``'s bytes; RemoteProtocolError (naming it) unless they are what it
        committed to, or if it reveals before committing."""
        self._known(server)
        digest = self._digests.get(server)
        if digest is None:
            raise RemoteProtocolError("revealed a coin before committing to it", peer=str(server))
        if not hmac.compare_digest(_commit(self.context, server, value), digest):
            raise RemoteProtocolError("revealed another coin than it committed to", peer=str(server))
        self._values[server] = value

    def coin(self) -> bytes | None:
        """The coin once every server has revealed; None before."""
        if not all(s in self._values for s in self.servers):
            return None
        parts = b"".join(bytes([s]) + self._values[s] for s in sorted(self.servers))
        return hashlib.sha256(b"asyncmpc coin\0" + self.context + parts).digest()

    def _known(self, server: int) -> None:
        if server not in self.servers or server == self.me:
            raise RemoteProtocolError(f"is not another server of this coin ({self.servers})", peer=str(server))
