"""The model owner's round runner: one secure aggregation round after another
(``Rounds``), with the data owners' requests beside it, and the plaintext floor
(``PlainRounds``) for benchmarks. The exceptional flows enter ``Rounds`` at one point each:
a disputed round is run again as a MAC round (``protocol.authenticated``), a MAC round that
names a cheater has it excluded for the session, and under ``[privacy]`` every round is counted
in the ledger before it opens and a dispute stops training (``DisputeError``)."""

from __future__ import annotations

import dataclasses
import itertools
import time
from dataclasses import dataclass

from asyncmpc.config import Config
from asyncmpc.crypto.macs import MacKey
from asyncmpc.errors import BudgetSpent, DisputeError, PeerLost, Refused, RemoteProtocolError
from asyncmpc.learning.privacy.budget import Budget
from asyncmpc.net.transport import Transport
from asyncmpc.protocol.aggregation import AggregationRound, Kind, RoundResult
from asyncmpc.protocol.dispute import MacPolicy
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.normcourt import NormCourt
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.plain import PlainRound
from asyncmpc.roles.driver import drive_round, send_all
from asyncmpc.wire import messages as m
from asyncmpc.wire.messages import Refusal

__all__ = ["Outcome", "PlainRounds", "Rounds"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one training (or statistics) round's aggregation came to."""

    result: RoundResult
    disputed: RoundResult | None = None
    """The ordinary round whose cross-check failed, when ``result`` is its MAC re-run."""


class Rounds:
    """Runs one secure aggregation round after another, with the data owners' requests beside it.

    Round numbers come from one counter, so a re-run takes a new number (and the owners' masks
    fresh streams). The exceptional flows enter here at one point each: a disputed round is
    run again as a MAC round (``protocol.authenticated``); a MAC round that names a cheater
    has it excluded for the rest of the session.
    """

    def __init__(
        self,
        config: Config,
        node: Transport,
        owners: list[str],
        first_round: int,
        excluded: dict[str, str],
        budget: Budget | None = None,
    ) -> None:
        self.config = config
        self.params = Params.of(config)
        self.budget = budget
        self.node = node
        self.owners = owners
        self.servers = [p.name for p in config.servers if p.name not in excluded]
        self.current: AggregationRound | None = None
        self.down_since: dict[str, float] = {}
        self._numbers = itertools.count(first_round)
        p = config.protocol
        self.macs = MacPolicy(always=p.mac_rounds == "always", window=p.mac_window)
        self.excluded = excluded
        """Servers proved to have lied, with why (the dict is metrics.json's ``excluded_servers``)."""
        self.left_out: list[str] = []
        """Data owners proved to send inconsistent shares, asked no more this session."""
        self.norm_failed: dict[str, int] = {}
        """Data owner -> rounds in which its input was over [protocol] norm_bound (metrics.json)."""
        self._asked_over: dict[str, object] = {}
        """The connection over which each owner was sent the current round's request."""
        self._refused: dict[str, str] = {}
        """Each data owner's first ``Reject`` reason, the only one logged."""
        self.court = NormCourt(self.params)
        """Judges servers' proofs that another lied in a norm check (``protocol.normcourt``)."""
        self.court.keys = node.peer_keys

    async def run(self, size: int, request: m.Message) -> Outcome:
        """Aggregate the owners' answers to ``request``; a disputed round is run again at once
        as a MAC round, and MAC rounds stay on for a while after (``MacPolicy``)."""
        result = await self._aggregate(size, request)
        _stop_if_refused(result)
        convicted = await self._convict()
        if result.kind is Kind.RECHECK:
            self.node.logger(__name__).warning(
                "round %d: %s; running it again with MACs", result.round_no, result.reason
            )
            rerun = await self._aggregate(size, request, mac=True)
            _stop_if_refused(rerun)
            await self._judge(rerun)
            return Outcome(rerun, disputed=result)
        if result.kind is not Kind.DISPUTED:
            await self._judge(result)
            return Outcome(result)
        if self.budget is not None:
            if convicted:  # the liar is out: the round yielded nothing, the next runs on the two others
                return Outcome(result)
            raise DisputeError(
                f"round {result.round_no}: {result.reason}; under [privacy] a MAC round cannot find the liar "
                f"(it would open the sum without noise): restart without one of {', '.join(result.suspects)}"
            )
        self.macs.disputed()
        self.node.logger(__name__).warning(
            "round %d: %s; running it again with MACs, and the next %d rounds",
            result.round_no,
            result.reason,
            self.macs.remaining - 1,
        )
        rerun = await self._aggregate(size, request)
        _stop_if_refused(rerun)
        if await self._convict() and rerun.total is None:
            # the liar's proof came as the re-run began, and it lied there too: once more, without it
            rerun = await self._aggregate(size, request)
            _stop_if_refused(rerun)
        await self._judge(rerun)
        return Outcome(rerun, disputed=result)

    async def _convict(self) -> bool:
        """Exclude every server the norm court convicted since it was last asked (a server's
        proof that another lied about its norm values: ``protocol.normcourt``); whether any."""
        fresh = [s for s in self.court.convicted if s not in self.excluded and s in self.servers]
        for server in fresh:
            await self.exclude(server, self.court.convicted[server])
        return bool(fresh)

    async def _aggregate(self, size: int, request: m.Message, *, mac: bool = False) -> RoundResult:
        """One round. It is a MAC round after a dispute (``MacPolicy``), when ``mac``, and
        when it runs on two servers (their sums are checked only by a MAC), unless under
        [privacy] (no MAC rounds: they would open the noise-free sum)."""
        round_no = next(self._numbers)
        if self.budget is not None:
            self.budget.spend()  # counted before it opens: it may release even if it fails
        live = await self._live_servers()
        present = await self._present_owners()
        two = len(live) < 3 and self.config.privacy is None
        key = MacKey.new() if mac or self.macs.next_is_mac() or two else None
        p = self.config.privacy
        tree = p is not None and p.mechanism == "tree" and isinstance(request, m.ModelUpdate)
        position = request.step + 1 if tree and isinstance(request, m.ModelUpdate) else 0
        norm = bool(self.params.norm_bound) and isinstance(request, m.ModelUpdate)
        self.current = AggregationRound(
            self.params,
            round_no,
            present,
            (size,),
            servers=live,
            mac_key=key,
            position=position,
            norm=norm,
            court=self.court,
        )
        request = _for_round(request, round_no, live, key, self.current.nonce)
        requests = [Send(o, request) for o in present]
        self._asked_over = {o: self.node.peers.get(o) for o in present}
        return await drive_round(self.node, self.current, self.on_other, requests)

    async def _judge(self, result: RoundResult) -> None:
        """Act on what a round proved: owners that sent inconsistent shares, a cheating server,
        owners whose input failed the norm check."""
        for owner in result.norm_failed:
            self.norm_failed[owner] = self.norm_failed.get(owner, 0) + 1
            self.node.logger(__name__).warning(
                "round %d: %s's input failed the servers' norm check (over [protocol] norm_bound, or a proof "
                "or signed digests that do not hold): left out of the sum",
                result.round_no,
                owner,
            )
        if result.inconsistent:
            self.node.logger(__name__).error(
                "round %d: the two servers holding a component of %s report different shares of it "
                "(the owner, or one of them, lied); kept in the sum, which the MAC checked",
                result.round_no,
                ", ".join(result.inconsistent),
            )
        if result.culprit and result.culprit in self.owners:
            self.node.logger(__name__).error(
                "round %d: %s sent its servers different shares that no MAC verifies; left out from now on",
                result.round_no,
                result.culprit,
            )
            self.owners = [o for o in self.owners if o != result.culprit]
            self.left_out.append(result.culprit)
        if result.kind is Kind.CAUGHT:
            await self.exclude(result.cheater, f"its result shares of round {result.round_no} failed the MAC check")
        elif result.mac and result.reason and result.total is not None and not result.inconsistent:
            self.node.logger(__name__).warning(
                "round %d: %s (a data owner's tag shares are wrong)", result.round_no, result.reason
            )

    async def exclude(self, server: str, reason: str) -> None:
        """Leave ``server`` out for the rest of the session, and have every other player stop
        talking to it; the two left are honest, so MAC rounds end (unless always on)."""
        self.node.logger(__name__).error("excluding %s for the rest of the session: %s", server, reason)
        self.excluded[server] = reason
        self.servers = [s for s in self.servers if s != server]
        self.down_since.pop(server, None)
        self.macs.excluded()
        notice = m.Exclude(session=self.config.session, server=server, reason=reason)
        await send_all(
            self.node, [Send(p, notice) for p in self.node.peers], timeout=self.config.protocol.server_timeout
        )
        await self.node.shun(server, reason)

    async def _live_servers(self) -> tuple[str, ...]:
        """The servers connected now; with fewer than two, wait (one line) until two are."""
        now = time.time()
        for s in self.servers:
            if s in self.node.peers and s in self.down_since:
                self.node.logger(__name__).info("%s is back after %.1fs", s, now - self.down_since.pop(s))
            elif s not in self.node.peers and s not in self.down_since:
                self.down_since[s] = now
                self.node.logger(__name__).warning(
                    "%s is down; rounds go on with the other servers, not cross-checked", s
                )
        up = [s for s in self.servers if s in self.node.peers]
        if len(up) < 2:
            down = ", ".join(
                f"{s} since {time.strftime('%H:%M:%S', time.localtime(self.down_since[s]))}"
                for s in self.servers
                if s in self.down_since
            )
            limit = self.config.protocol.idle_timeout
            self.node.logger(__name__).warning(
                "rounds paused: %s down; waiting up to %gs for one to return", down, limit
            )
            if not await self.node.wait_until(lambda: sum(s in self.node.peers for s in self.servers) >= 2, limit):
                raise PeerLost(f"{self.node.name}: fewer than two compute servers for {limit:g}s ({down})")
            return await self._live_servers()
        return tuple(up)

    async def _present_owners(self) -> tuple[str, ...]:
        """The data owners connected now; with fewer than ``min_owners``, wait (one line) until
        enough are: a round over fewer would yield nothing (every server refuses it)."""
        minimum = max(2, self.config.protocol.min_owners)

        def present() -> tuple[str, ...]:
            return tuple(o for o in self.owners if o in self.node.peers)

        if len(present()) >= minimum:
            return present()
        limit = self.config.protocol.idle_timeout
        self.node.logger(__name__).warning(
            "rounds paused: %d of %d data owners connected, fewer than min_owners = %d; waiting up to %gs",
            len(present()),
            len(self.owners),
            minimum,
            limit,
        )
        if not await self.node.wait_until(lambda: len(present()) >= minimum, limit):
            raise PeerLost(
                f"{self.node.name}: fewer than min_owners = {minimum} data owners connected for {limit:g}s "
                f"({len(present())} of {len(self.owners)})"
            )
        self.node.logger(__name__).info("%d data owners connected; rounds go on", len(present()))
        return present()

    async def on_other(self, sender: str, msg: m.Message | None) -> None:
        """A data owner's message during a round: a ``Decline`` withdraws it from the round; a
        ``Reject`` (say, of the ``Schema``, by an owner whose columns differ) is logged."""
        rnd = self.current
        if isinstance(msg, m.Decline) and rnd is not None:
            self.node.logger(__name__).warning("%s declined round %d: %s", sender, msg.round_no, msg.reason)
            if msg.round_no == rnd.round_no:
                await send_all(self.node, rnd.withdraw(sender))
        elif msg is None:
            if self._reconnected_before_asked(sender):
                return  # an older connection's notice, read late: the request went over the new one
            self.node.logger(__name__).warning("lost connection to %s", sender)
            if rnd is not None:
                await send_all(self.node, rnd.withdraw(sender))  # do not wait for it until the deadline
        elif isinstance(msg, m.Reject):
            if sender not in self._refused:  # once per owner: an owner cannot flood the log
                self._refused[sender] = msg.reason
                self.node.logger(__name__).warning("%s refused: %s", sender, _shown(msg.reason))
        else:
            await self.node.drop(sender, RemoteProtocolError(f"unexpected {msg.KIND!r}", peer=sender))

    def _reconnected_before_asked(self, owner: str) -> bool:
        """Whether a closed-connection notice from ``owner`` is about an older connection than
        the one this round's request went over (that one is still open). The notice waits in
        the inbox until a round reads it; by then the owner may have reconnected, been asked
        over the new connection, and be answering."""
        conn = self.node.peers.get(owner)
        return conn is not None and conn is self._asked_over.get(owner)


def _shown(reason: str, most: int = 200) -> str:
    """A peer's text for a log line: one line, at most ``most`` characters."""
    text = reason if reason.isprintable() else repr(reason)
    return text if len(text) <= most else text[:most] + "..."


def _stop_if_refused(result: RoundResult) -> None:
    """A refusal that every later round would meet too stops training (one line)."""
    if result.refusal is Refusal.BUDGET:
        raise BudgetSpent(f"round {result.round_no}: {result.reason}")
    if result.refusal is Refusal.NO_MAC:
        raise Refused(
            f"round {result.round_no}: {result.reason}: does every player's hosts.toml have the same [privacy]?"
        )


def _for_round(
    request: m.Message, round_no: int, servers: tuple[str, ...], key: MacKey | None, nonce: bytes = b""
) -> m.Message:
    """The owners' request for round ``round_no``: its number, its servers, its MAC key (and a
    norm-checked round's nonce)."""
    if isinstance(request, (m.ModelUpdate, m.StatsRequest)):
        mac_key = b"" if key is None else key.key
        asked = dataclasses.replace(request, round_no=round_no, servers=servers, mac_key=mac_key)
        return dataclasses.replace(asked, norm=nonce) if isinstance(asked, m.ModelUpdate) else asked
    return dataclasses.replace(request, round_no=round_no)


class PlainRounds(Rounds):
    """Plaintext federated averaging: gradients come here in the clear and are summed."""

    async def run(self, size: int, request: m.Message) -> Outcome:
        round_no = next(self._numbers)
        present = tuple(o for o in self.owners if o in self.node.peers)
        requests = [Send(o, _for_round(request, round_no, (), None)) for o in present]
        rnd = PlainRound(self.params, round_no, present, (size,))
        return Outcome(await drive_round(self.node, rnd, self.on_other, requests))
