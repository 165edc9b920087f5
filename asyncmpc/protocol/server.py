"""Layer 4: the compute server's state machine (sans-I/O: messages in, ``Send`` actions out).

Per round: the model owner opens it (``OpenRound``: owners, shape); data owners send their
replicated share (``InputShare``), which is checked (sender expected, shape, no duplicate) and
kept; the server reports ``Holding`` once every expected owner is in, or when told
``CloseInputs``; on ``Aggregate`` it sums the named contributors' shares and answers with its
``ResultShare``. Input shares that arrive before their round is opened wait (bounded), since
the model owner and the data owners race to reach the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asyncmpc.config import Config
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.prf import ZeroSharer
from asyncmpc.protocol.events import Send, check_sender
from asyncmpc.ring import RingArray
from asyncmpc.rss import RShare, materialize
from asyncmpc.wire import messages as m

__all__ = ["ServerProtocol"]

MAX_EARLY_ROUNDS = 2
"""Input shares may arrive at most this many rounds ahead of the newest opened round."""


@dataclass(slots=True)
class _Round:
    owners: frozenset[str]
    shape: tuple[int, ...]
    shares: dict[str, RShare] = field(default_factory=dict)
    reported: bool = False


class ServerProtocol:
    """Compute server ``name`` of ``config``; call ``feed`` with every message received."""

    def __init__(self, config: Config, name: str, own_prf_key: bytes | None = None) -> None:
        self.config = config
        self.name = name
        self.index = config.server_index(name)
        self.model_owner = config.model_owner.name
        self._rounds: dict[int, _Round] = {}
        self._early: dict[int, dict[str, m.InputShare]] = {}
        self._newest = 0
        self._own_key = own_prf_key
        self.zeros: ZeroSharer | None = None

    # ------------------------------------------------------------ start-up

    def start(self) -> list[Send]:
        """Messages to send once connected: our PRF key to the previous server."""
        if self._own_key is None:
            return []
        prev = self.config.servers[(self.index - 1) % 3].name
        return [Send(prev, m.PrfKey(session=self.config.session, key=self._own_key))]

    # ------------------------------------------------------------ messages

    def feed(self, sender: str, msg: m.Message) -> list[Send]:
        """Handle one message from ``sender``. Raises RemoteProtocolError if it breaks the rules."""
        role = self.config.player(sender).role
        check_sender(sender, role, msg, self.config.session)
        if isinstance(msg, m.OpenRound):
            return self._open(sender, msg)
        if isinstance(msg, m.InputShare):
            return self._input(sender, msg)
        if isinstance(msg, m.CloseInputs):
            rnd = self._round(sender, msg)
            return [self._holding(msg.round_no, rnd)]
        if isinstance(msg, m.Aggregate):
            return self._aggregate(sender, msg)
        if isinstance(msg, m.Withdraw):
            return self._withdraw(sender, msg)
        if isinstance(msg, m.PrfKey):
            return self._prf_key(sender, msg)
        if isinstance(msg, (m.Abort, m.Reject)):
            return []
        raise RemoteProtocolError(f"a compute server does not take {msg.KIND!r} messages", peer=sender)

    def _open(self, sender: str, msg: m.OpenRound) -> list[Send]:
        if msg.round_no <= self._newest:
            raise RemoteProtocolError(f"round {msg.round_no} is not after round {self._newest}", peer=sender)
        if not msg.owners:
            raise RemoteProtocolError(f"round {msg.round_no} opened with no owners", peer=sender)
        for owner in msg.owners:
            if owner not in self.config.players or self.config.players[owner].role != m.DO:
                raise RemoteProtocolError(f"round {msg.round_no} names {owner!r}, not a data owner", peer=sender)
        if len(set(msg.owners)) != len(msg.owners):
            raise RemoteProtocolError(f"round {msg.round_no} names an owner twice", peer=sender)
        self._newest = msg.round_no
        rnd = _Round(owners=frozenset(msg.owners), shape=tuple(msg.shape))
        self._rounds[msg.round_no] = rnd
        out: list[Send] = []
        for owner, share in self._early.pop(msg.round_no, {}).items():
            out += self._accept(owner, share, msg.round_no, rnd)
        for old in [r for r in self._early if r < msg.round_no]:
            del self._early[old]
        return out

    def _input(self, sender: str, msg: m.InputShare) -> list[Send]:
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            if self._newest < msg.round_no <= self._newest + MAX_EARLY_ROUNDS:
                waiting = self._early.setdefault(msg.round_no, {})
                if sender in waiting:
                    raise RemoteProtocolError(f"second input share for round {msg.round_no}", peer=sender)
                waiting[sender] = msg
                return []
            raise RemoteProtocolError(f"input share for round {msg.round_no}, which is not open", peer=sender)
        return self._accept(sender, msg, msg.round_no, rnd)

    def _accept(self, sender: str, msg: m.InputShare, round_no: int, rnd: _Round) -> list[Send]:
        if sender not in rnd.owners:
            raise RemoteProtocolError(f"not an expected owner of round {round_no}", peer=sender)
        if sender in rnd.shares:
            raise RemoteProtocolError(f"second input share for round {round_no}", peer=sender)
        if rnd.reported and len(rnd.shares) < len(rnd.owners):
            raise RemoteProtocolError(f"input share for round {round_no} came after its inputs closed", peer=sender)
        if tuple(msg.shape) != rnd.shape:
            raise RemoteProtocolError(
                f"input share of shape {tuple(msg.shape)} for round {round_no}, expected {rnd.shape}", peer=sender
            )
        try:
            a = materialize(msg.a, rnd.shape)
            b = materialize(msg.b, rnd.shape)
        except ValueError as exc:
            raise RemoteProtocolError(f"round {round_no}: {exc}", peer=sender) from None
        rnd.shares[sender] = RShare(self.index, a, b)
        if len(rnd.shares) == len(rnd.owners):
            return [self._holding(round_no, rnd)]
        return []

    def _withdraw(self, sender: str, msg: m.Withdraw) -> list[Send]:
        rnd = self._round(sender, msg)
        if rnd.reported:
            return []
        for owner in msg.owners:
            rnd.shares.pop(owner, None)
        rnd.owners = rnd.owners - frozenset(msg.owners)
        if len(rnd.shares) == len(rnd.owners):
            return [self._holding(msg.round_no, rnd)]
        return []

    def _holding(self, round_no: int, rnd: _Round) -> Send:
        rnd.reported = True
        held = tuple(sorted(rnd.shares))
        return Send(self.model_owner, m.Holding(session=self.config.session, round_no=round_no, owners=held))

    def _round(self, sender: str, msg: m.Message) -> _Round:
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            raise RemoteProtocolError(f"{msg.KIND!r} for round {msg.round_no}, which is not open", peer=sender)
        return rnd

    def _aggregate(self, sender: str, msg: m.Aggregate) -> list[Send]:
        rnd = self._round(sender, msg)
        missing = [o for o in msg.contributors if o not in rnd.shares]
        if missing or not msg.contributors or len(set(msg.contributors)) != len(msg.contributors):
            raise RemoteProtocolError(
                f"aggregate of round {msg.round_no} names owners this server does not hold: {missing}", peer=sender
            )
        a, b = _sum_shares([rnd.shares[o] for o in msg.contributors])
        del self._rounds[msg.round_no]
        result = m.ResultShare(
            session=self.config.session, round_no=msg.round_no, contributors=tuple(msg.contributors), a=a, b=b
        )
        return [Send(self.model_owner, result)]

    def _prf_key(self, sender: str, msg: m.PrfKey) -> list[Send]:
        nxt = self.config.servers[(self.index + 1) % 3].name
        if sender != nxt:
            raise RemoteProtocolError(f"PRF keys come from {nxt!r} only", peer=sender)
        if self._own_key is None:
            return []
        if self.zeros is not None:
            raise RemoteProtocolError("second PRF key", peer=sender)
        try:
            self.zeros = ZeroSharer(self._own_key, msg.key)
        except ValueError as exc:
            raise RemoteProtocolError(str(exc), peer=sender) from None
        return []

    @property
    def open_rounds(self) -> tuple[int, ...]:
        return tuple(sorted(self._rounds))


def _sum_shares(shares: list[RShare]) -> tuple[RingArray, RingArray]:
    a = np.array(shares[0].a, dtype=np.int64, copy=True)
    b = np.array(shares[0].b, dtype=np.int64, copy=True)
    for s in shares[1:]:
        a += s.a
        b += s.b
    return a, b
