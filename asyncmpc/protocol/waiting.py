"""Messages for rounds a compute server has not opened yet (pure).

Owners, and the other servers, may reach a server before the model owner's ``OpenRound``
does: their shares, noise parts and reports wait here, for at most ``MAX_EARLY_ROUNDS`` round
numbers ahead of the newest opened, and are handled when their round opens.
"""

from __future__ import annotations

from asyncmpc.errors import RemoteProtocolError
from asyncmpc.wire import messages as m

__all__ = ["MAX_EARLY_ROUNDS", "Waiting"]

MAX_EARLY_ROUNDS = 2
"""Each sender's messages wait for at most this many round numbers ahead of the newest opened
round; its lowest are dropped when it sends for more (a sender that sends for far rounds
drops only its own: before, one server sending for round 10^9 pushed out every player's
messages for the next round)."""


class Waiting:
    """By round and (sender, kind): one message of each kind from each sender (of a server's
    norm values, one per owner; the caller takes them only about configured data owners)."""

    def __init__(self) -> None:
        self._rounds: dict[int, dict[tuple[str, str], m.Message]] = {}

    @property
    def rounds(self) -> list[int]:
        """The round numbers something waits for."""
        return sorted(self._rounds)

    def hold(self, sender: str, msg: m.Message, newest: int) -> None:
        """Keep ``msg`` until its round opens (a stale one, at or below ``newest``, is ignored).
        RemoteProtocolError for a second input share from one sender for one round."""
        if msg.round_no <= newest:
            return  # stale: a round closed, superseded, or from before the model owner restarted
        waiting = self._rounds.setdefault(msg.round_no, {})
        if isinstance(msg, m.InputShare) and (sender, msg.KIND) in waiting:
            raise RemoteProtocolError(f"second input share for round {msg.round_no}", peer=sender)
        kind = f"{msg.KIND}:{msg.owner}" if isinstance(msg, m.NormOpened) else msg.KIND  # one per owner
        waiting[(sender, kind)] = msg  # a noise part or report that comes again is the same
        own = sorted(r for r, held in self._rounds.items() if any(s == sender for s, _ in held))
        for old in own[:-MAX_EARLY_ROUNDS]:  # each sender's lowest go: no one pushes out another's
            held = self._rounds[old]
            for key in [k for k in held if k[0] == sender]:
                del held[key]
            if not held:
                del self._rounds[old]

    def take(self, round_no: int) -> list[tuple[str, m.Message]]:
        """What waited for ``round_no``, which just opened; what waited for earlier rounds goes."""
        out = [(sender, msg) for (sender, _), msg in self._rounds.pop(round_no, {}).items()]
        for old in [r for r in self._rounds if r < round_no]:
            del self._rounds[old]
        return out

    def drop_shares_of(self, sender: str) -> None:
        """``sender``'s waiting shares were made under keys it has replaced."""
        for waiting in self._rounds.values():
            waiting.pop((sender, m.InputShare.KIND), None)

    def clear(self) -> None:
        self._rounds.clear()
