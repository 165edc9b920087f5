"""Keyed data owners at a compute server (pure): the long-term stream keys owners register
(``ShareKeys``), and the sums of their streams expanded ahead of a round.

A keyed owner's seed components of round r are the streams of its registered keys at nonce r,
so a server knows them before the shares arrive and expands them while it has nothing to read:
into an open round's sums, and, once every round is answered, into a guess at the next round
(same owners and shape), corrected when that round opens. Keys registered again (the owner
restarted, or lost the model owner) replace the old ones in every round still expecting it.
"""

from __future__ import annotations

from asyncmpc.crypto.prf import SEED_BYTES, round_nonce
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.sums import Guess, RunningSums, Streams, add_streams

__all__ = ["KeyedOwners"]


class KeyedOwners:
    def __init__(self) -> None:
        self.keys: dict[str, tuple[bytes, bytes]] = {}
        self.guess: Guess | None = None

    def register(self, owner: str, a: bytes, b: bytes) -> bool:
        """``owner``'s keys for components a and b (empty: that component is not keyed);
        whether they differ from those it had. Raises RemoteProtocolError."""
        for name, key in (("a", a), ("b", b)):
            if len(key) not in (0, SEED_BYTES):
                raise RemoteProtocolError(
                    f"ShareKeys: key {name} of {len(key)} bytes, expected {SEED_BYTES} or none", peer=owner
                )
        if not a and not b:
            raise RemoteProtocolError("ShareKeys registers no key", peer=owner)
        known = self.keys.get(owner)
        self.keys[owner] = (a, b)
        return known != (a, b)

    def key(self, owner: str, component: int) -> bytes:
        """The registered key of ``owner``'s component (b"" if none)."""
        return self.keys.get(owner, (b"", b""))[component]

    def streams(self, owner: str, round_no: int) -> Streams:
        key_a, key_b = self.keys[owner]
        nonce = round_nonce(round_no)
        return ((key_a, nonce) if key_a else None, (key_b, nonce) if key_b else None)

    def forget(self, owner: str) -> None:
        self.keys.pop(owner, None)

    def restream(self, owner: str, rounds: dict[int, RunningSums]) -> None:
        """Make every round that still expects ``owner`` (and the guess) use its current keys,
        taking out streams expanded under others; shares already taken keep their own streams."""
        for round_no, rnd in rounds.items():
            if owner in rnd.owners and owner not in rnd.held:
                current = self.streams(owner, round_no)
                if rnd.streams.get(owner, current) != current:
                    rnd.drop_streams(owner)
                rnd.streams[owner] = current
        guess = self.guess
        if guess is not None and guess.streams.get(owner, None) not in (None, self.streams(owner, guess.round_no)):
            self.guess = None

    def open(self, rnd: RunningSums, round_no: int) -> None:
        """Round ``round_no`` opens as ``rnd``: take the guess if it was right, and expect
        every keyed owner's streams (expanded when idle)."""
        guess, self.guess = self.guess, None
        if guess is not None and guess.round_no == round_no and guess.shape == rnd.shape:
            rnd.sums, rnd.streams, rnd.in_sums = guess.sums, guess.streams, set(guess.streams)
        for owner in sorted(rnd.owners):
            if owner in self.keys and owner not in rnd.streams:
                rnd.streams[owner] = self.streams(owner, round_no)
        for owner in [o for o in rnd.streams if o not in rnd.owners]:
            rnd.drop_streams(owner)  # guessed, but not in this round

    def expand_next(self, last_no: int, last: RunningSums) -> None:
        """Every round answered, the last being ``last_no``: expand the keyed streams of the
        round likely to follow (same owners and shape), unless that is done already."""
        if self.guess is not None and self.guess.round_no > last_no:
            return
        guess = Guess(last_no + 1, last.shape, {}, [None, None])
        for owner in sorted(last.owners):
            if owner in self.keys:
                guess.streams[owner] = self.streams(owner, guess.round_no)
        if guess.streams:
            add_streams(guess.sums, guess.shape, list(guess.streams.values()))
            self.guess = guess
