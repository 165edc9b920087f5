"""Layer 4: the compute server's state machine (sans-I/O: messages in, ``Send`` actions out).

Per round: the model owner opens it (``OpenRound``: owners, shape); data owners send their
replicated share (``InputShare``), which is checked (sender expected, shape, no duplicate) and
kept; the server reports ``Holding`` once every expected owner is in, or when told
``CloseInputs``; on ``Aggregate`` it sums the named contributors' shares and answers with its
``ResultShare``. When the round was opened with a MAC key, a server that receives every
expected owner's share sends its ``ResultShare`` right away instead of ``Holding`` (the common
case costs no ``Aggregate`` round trip); the state stays until the next round, so an
``Aggregate`` over fewer owners can still follow. Input shares that arrive before their round
is opened wait (bounded), since the model owner and the data owners race to reach the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asyncmpc.config import Config
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.prf import MAC_KEY_BYTES, ZeroSharer, add_keystreams, keystream_blocks, mac
from asyncmpc.protocol.events import Send, check_sender
from asyncmpc.ring import RingArray
from asyncmpc.rss import Seed
from asyncmpc.wire import messages as m

__all__ = ["ServerProtocol"]

MAX_ELEMENTS = 1 << 31
"""The largest vector a round may aggregate (16 GiB per component)."""

MAX_EARLY_ROUNDS = 2
"""Input shares may arrive at most this many rounds ahead of the newest opened round."""


@dataclass(slots=True)
class _Round:
    """One round's state: the running sums of both components, and per owner only its seeds.

    Vector components are added into ``sums`` as they arrive, so memory does not grow with the
    number of owners (a sum starts as the first vector received, when that one is writable:
    no zero fill, no addition). Seeds wait in ``unflushed`` until the server is idle or
    needs the sums, and are then expanded together: all waiting streams are added a
    cache-sized block at a time, so the sums cross memory once per batch, not once per seed.
    An owner can be left out of the sum only if every component it sent this server was a seed
    (dropped while waiting, subtracted after); a vector, once added, cannot be.
    """

    owners: frozenset[str]
    shape: tuple[int, ...]
    sums: list[RingArray | None] = field(default_factory=lambda: [None, None])
    """The running sums of components a and b; None until something is added."""
    held: dict[str, tuple[Seed | None, Seed | None]] = field(default_factory=dict)
    reported: bool = False
    sent: bool = False
    """The running sums went out in an early ``ResultShare``."""
    unflushed: list[str] = field(default_factory=list)
    """Held owners whose seeds are not in the sums yet."""
    mac_key: bytes = b""


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
        size = 1
        for dim in msg.shape:
            size *= dim
        if size > MAX_ELEMENTS:
            raise RemoteProtocolError(f"round {msg.round_no} of {size} elements, above {MAX_ELEMENTS}", peer=sender)
        self._newest = msg.round_no
        shape = tuple(msg.shape)
        if msg.mac_key and len(msg.mac_key) != MAC_KEY_BYTES:
            raise RemoteProtocolError(f"round {msg.round_no} opened with a MAC key that is not {MAC_KEY_BYTES} bytes")
        rnd = _Round(frozenset(msg.owners), shape)
        rnd.mac_key = msg.mac_key
        for old in [r for r in self._rounds if r < msg.round_no]:
            del self._rounds[old]  # a newer round supersedes one that never finished
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
        if sender in rnd.held:
            raise RemoteProtocolError(f"second input share for round {round_no}", peer=sender)
        if rnd.reported and len(rnd.held) < len(rnd.owners):
            raise RemoteProtocolError(f"input share for round {round_no} came after its inputs closed", peer=sender)
        if tuple(msg.shape) != rnd.shape:
            raise RemoteProtocolError(
                f"input share of shape {tuple(msg.shape)} for round {round_no}, expected {rnd.shape}", peer=sender
            )
        for comp in (msg.a, msg.b):
            if not isinstance(comp, Seed) and comp.shape != rnd.shape:
                raise RemoteProtocolError(
                    f"round {round_no}: component of shape {comp.shape}, expected {rnd.shape}", peer=sender
                )
        for i, comp in enumerate((msg.a, msg.b)):
            if isinstance(comp, Seed):
                continue
            acc = rnd.sums[i]
            if acc is None:  # adopt the received vector (a view of its frame) as the sum
                rnd.sums[i] = comp if comp.flags.writeable and comp.flags.c_contiguous else comp.copy()
            else:
                np.add(acc, comp, out=acc)
        rnd.held[sender] = (
            msg.a if isinstance(msg.a, Seed) else None,
            msg.b if isinstance(msg.b, Seed) else None,
        )
        if rnd.held[sender] != (None, None):
            rnd.unflushed.append(sender)
        if len(rnd.held) == len(rnd.owners):
            return [self._complete(round_no, rnd)]
        return []

    def _complete(self, round_no: int, rnd: _Round) -> Send:
        """Every expected owner is in: the result at once if the round has a key, else ``Holding``."""
        if not rnd.mac_key:
            return self._holding(round_no, rnd)
        rnd.reported = rnd.sent = True
        key, rnd.mac_key = rnd.mac_key, b""  # one-time: an Aggregate brings a fresh key
        self._flush(rnd)
        result = m.ResultShare(
            session=self.config.session,
            round_no=round_no,
            contributors=tuple(sorted(rnd.held)),
            a=self._sum(rnd, 0),
            b_tag=mac(key, self._sum(rnd, 1)),
        )
        return Send(self.model_owner, result)

    def idle(self) -> None:
        """Nothing to read: expand the seeds received so far into the open rounds' sums."""
        for rnd in self._rounds.values():
            if not rnd.sent:
                self._flush(rnd)

    @staticmethod
    def _flush(rnd: _Round) -> None:
        """Expand the waiting seeds into the sums."""
        waiting = [rnd.held[owner] for owner in rnd.unflushed]
        rnd.unflushed.clear()
        for i, acc in enumerate(rnd.sums):
            keys = [seed.key for seed in (seeds[i] for seeds in waiting) if seed is not None]
            if not keys:
                continue
            if acc is None:  # the streams' sum is written, not added
                rnd.sums[i] = acc = np.empty(rnd.shape, dtype=np.int64)
                for _ in keystream_blocks(keys, acc.size, into=acc):
                    pass
            else:
                add_keystreams(acc, keys)

    @staticmethod
    def _sum(rnd: _Round, i: int) -> RingArray:
        acc = rnd.sums[i]
        if acc is None:
            rnd.sums[i] = acc = np.zeros(rnd.shape, dtype=np.int64)
        return acc

    def _withdraw(self, sender: str, msg: m.Withdraw) -> list[Send]:
        rnd = self._round(sender, msg)
        if rnd.reported:
            return []
        rnd.owners = rnd.owners - frozenset(msg.owners)
        for owner in msg.owners:
            if owner in rnd.held and not self._leave_out(rnd, owner):
                rnd.owners = rnd.owners | {owner}  # its vector is in the sum: it stays, if held everywhere
        if len(rnd.held) == len(rnd.owners):
            return [self._complete(msg.round_no, rnd)]
        return []

    def _holding(self, round_no: int, rnd: _Round) -> Send:
        rnd.reported = True
        held = tuple(sorted(rnd.held))
        return Send(self.model_owner, m.Holding(session=self.config.session, round_no=round_no, owners=held))

    def _round(self, sender: str, msg: m.Message) -> _Round:
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            raise RemoteProtocolError(f"{msg.KIND!r} for round {msg.round_no}, which is not open", peer=sender)
        return rnd

    def _leave_out(self, rnd: _Round, owner: str) -> bool:
        """Take ``owner``'s share out of the sums if it sent only seeds; False if it cannot."""
        seeds = rnd.held[owner]
        if seeds[0] is None or seeds[1] is None:
            return False
        if owner in rnd.unflushed:
            rnd.unflushed.remove(owner)
        else:
            add_keystreams(self._sum(rnd, 0), [seeds[0].key], subtract=True)
            add_keystreams(self._sum(rnd, 1), [seeds[1].key], subtract=True)
        del rnd.held[owner]
        return True

    def _aggregate(self, sender: str, msg: m.Aggregate) -> list[Send]:
        rnd = self._round(sender, msg)
        missing = [o for o in msg.contributors if o not in rnd.held]
        if missing or not msg.contributors or len(set(msg.contributors)) != len(msg.contributors):
            raise RemoteProtocolError(
                f"aggregate of round {msg.round_no} names owners this server does not hold: {missing}", peer=sender
            )
        if len(msg.mac_key) != MAC_KEY_BYTES and not msg.full:
            raise RemoteProtocolError(
                f"aggregate of round {msg.round_no} has no {MAC_KEY_BYTES}-byte MAC key", peer=sender
            )
        del self._rounds[msg.round_no]
        if rnd.reported and rnd.sent:
            # the early result went out with these arrays, which may still be in a send buffer
            rnd.sums = [self._sum(rnd, 0).copy(), self._sum(rnd, 1).copy()]
        stuck = [o for o in set(rnd.held) - set(msg.contributors) if not self._leave_out(rnd, o)]
        if stuck:
            reason = (
                f"round {msg.round_no}: cannot leave out {', '.join(sorted(stuck))}: "
                "a vector share of theirs is already in this server's sum"
            )
            return [Send(self.model_owner, m.Reject(session=self.config.session, round_no=msg.round_no, reason=reason))]
        self._flush(rnd)
        common = {"session": self.config.session, "round_no": msg.round_no, "contributors": tuple(msg.contributors)}
        if msg.full:
            result = m.ResultShare(**common, a=self._sum(rnd, 0), b=self._sum(rnd, 1))  # type: ignore[arg-type]
        else:
            result = m.ResultShare(**common, a=self._sum(rnd, 0), b_tag=mac(msg.mac_key, self._sum(rnd, 1)))  # type: ignore[arg-type]
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
