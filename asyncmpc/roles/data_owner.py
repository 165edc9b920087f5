"""A data owner process: answers the model owner's requests with shared contributions.

It only dials out (to the model owner and the three servers), and keeps those connections:
a lost peer is dialled again with back-off (``Node.maintain``), and a server is sent this
owner's stream keys whenever it (re)connects, before any share. Losing the model owner ends an
epoch: the owner draws new stream keys at once and registers them with the servers, so a
model owner that resumes and asks again for a round number gets a mask from fresh streams.
It exits on ``Finish``, or when the model owner has been absent (or silent) for
``idle_timeout``.

Its raw data, gradients and shares never leave it in the clear: servers receive
seed-compressed replicated shares, the model owner receives nothing but, when it cannot
contribute, a ``Decline`` with the reason. (In the plaintext benchmark mode,
``aggregation = "plain"`` with synthetic data, it sends its synthetic gradient to the model
owner instead.)
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.crypto.macs import MacKey
from asyncmpc.crypto.prf import RandomBytes
from asyncmpc.crypto.rss import InputSharer
from asyncmpc.crypto.signing import Signer
from asyncmpc.errors import ConfigError, EncodingError, PeerLost, PluginError
from asyncmpc.learning.bounds import feature_misfit
from asyncmpc.learning.privacy.budget import DataLedger
from asyncmpc.learning.workload import OwnerWorkload, owner_workload
from asyncmpc.net.runtime import Node
from asyncmpc.net.tls import TlsContexts, certificate_signer
from asyncmpc.net.transport import Opener, Transport
from asyncmpc.protocol.authenticated import authenticated_shares
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.normshares import norm_shares
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.releases import MAX_ANSWERS, RERUN_WINDOW, OwnerAnswers, input_id, key_id
from asyncmpc.protocol.shares import contribution_shares, key_messages
from asyncmpc.roles.driver import ModelOwnerWatch, send_all
from asyncmpc.wire import messages as m

__all__ = ["run_data_owner"]


async def run_data_owner(
    config: Config,
    name: str,
    *,
    tls: TlsContexts | None = None,
    opener: Opener | None = None,
    prepare_ahead: bool = True,
    random_bytes: RandomBytes = os.urandom,
) -> dict[str, Any]:
    """Serve the model owner until it finishes the session; return this owner's statistics.

    With ``prepare_ahead`` it computes the next round's masks while it waits (two vectors of
    memory kept between rounds); a swarm of owners in one process turns that off.
    ``random_bytes`` is the source of share seeds (injected by tests). Its connections come
    from ``opener`` (default: a TCP ``Node``).
    """
    owner = _Owner(config, name, prepare_ahead, random_bytes)
    async with (opener or functools.partial(Node, tls=tls))(config, name, greet=owner.greet) as node:
        await owner.connect(node)
        return await owner.serve(node)


class _Owner:
    """One data owner's state between rounds: its workload, its sharer (and keys)."""

    def __init__(self, config: Config, name: str, prepare_ahead: bool, random_bytes: RandomBytes) -> None:
        self.config = config
        self.name = name
        self.work = owner_workload(config, config.player(name))
        self.params = Params.of(config)
        self.model_owner = config.model_owner.name
        self.servers = [p.name for p in config.servers]
        self.plain = config.training.aggregation == "plain"
        self.prepare_ahead = prepare_ahead and not self.plain
        self.sharer = InputSharer(random_bytes, keep_buffers=prepare_ahead, keyed=not self.plain)
        self.contributed = 0
        self.schema: tuple[str, ...] | None = None
        """The model owner's feature names this owner took (``take_columns``), once."""
        self.answers = OwnerAnswers()
        """Which requests it computes for (``protocol.releases``: the newest again, or a new step)."""
        self.signed: collections.deque[tuple[int, bytes]] = collections.deque(maxlen=RERUN_WINDOW * MAX_ANSWERS)
        """The newest (round, nonce) pairs it signed norm digests for (as many as it may answer
        requests it would still compute for): it signs one list for each (a second, of a fresh
        proof, would look like equivocation to the servers, so a model owner asking twice under
        one nonce could frame it)."""
        self.ledger = None if config.privacy is None or self.plain else _data_ledger(config, self.work)
        """Under [privacy]: its own ledger of its data's releases, across runs."""

    @functools.cached_property
    def signer(self) -> Signer | None:
        """With TLS: its certificate's key, which signs its norm digests (``crypto.signing``);
        read at the first norm-checked round (its TLS files were checked at start)."""
        return None if self.plain else certificate_signer(self.config, self.name)

    def greet(self, peer: str) -> list[m.Message]:
        """A server that (re)connects gets this owner's current stream keys first."""
        return [] if self.plain else [s.msg for s in key_messages(self.params, self.sharer) if s.to == peer]

    async def connect(self, node: Transport) -> None:
        """The servers first (two, and the third for ``server_timeout`` more: the model owner
        counts an owner present once it calls), then the model owner; each is dialled again
        whenever its connection closes."""
        if not self.plain:
            node.maintain(self.servers)
            p = self.config.protocol
            try:
                await node.wait_for_most(self.servers, 2, p.connect_timeout, p.server_timeout)
            except PeerLost as exc:
                node.logger(__name__).warning("%s; going on, and dialling them still", exc)
        node.maintain([self.model_owner])
        node.logger(__name__).info("holding %s", self.work.describe())
        if self.ledger is not None:
            node.logger(__name__).info(
                "[privacy] this data's own ledger: %d releases so far, epsilon %.3f (%s)",
                self.ledger.releases,
                self.ledger.epsilon,
                self.ledger.path,
            )

    async def serve(self, node: Transport) -> dict[str, Any]:
        """Answer the model owner's requests until ``Finish``, or until it has been absent or
        silent for ``idle_timeout``."""
        watch = ModelOwnerWatch(node)
        while True:
            sender, msg = await watch.recv()
            if sender != self.model_owner:
                if isinstance(msg, m.Reject):
                    node.logger(__name__).warning("%s refused a message: %s", sender, msg.reason)
                elif msg is None:
                    node.logger(__name__).info("lost %s; dialling it again", sender)
                continue
            if msg is None:
                await self.model_owner_lost(node)
            elif isinstance(msg, m.Finish):
                node.logger(__name__).info("session finished after %d contributions", self.contributed)
                sent, received = node.traffic()
                stats: dict[str, Any] = {
                    "contributions": self.contributed,
                    "bytes_sent": sent,
                    "bytes_received": received,
                }
                if self.ledger is not None:
                    node.logger(__name__).info("[privacy] this data has spent epsilon %.3f", self.ledger.epsilon)
                    stats["epsilon"] = self.ledger.epsilon
                return stats
            elif isinstance(msg, m.Schema):
                await self.take_columns(node, msg)
            elif isinstance(msg, m.Exclude):
                node.logger(__name__).error("the model owner excluded %s: %s", msg.server, msg.reason)
                await node.shun(msg.server, msg.reason)
            elif isinstance(msg, (m.StatsRequest, m.ModelUpdate)):
                await self.stop_if_misfit(node, msg)
                out = self.shares_for(msg)
                del msg  # the model's frame is not kept while the shares go out (nor while we wait)
                await self.deliver(node, out)
                del out

    async def model_owner_lost(self, node: Transport) -> None:
        """An epoch ends: new stream keys at once, registered with the servers before any share
        (a resumed model owner may ask again for a round number: fresh streams answer it)."""
        node.logger(__name__).warning("lost the model owner; new stream keys, dialling it again")
        if not self.plain:
            self.sharer.rekey()
            await send_all(node, [s for s in key_messages(self.params, self.sharer) if s.to in node.peers])

    async def take_columns(self, node: Transport, msg: m.Schema) -> None:
        """Take this owner's columns by the model owner's names, once: its first ``Schema``
        fixes the order for the life of this process, and a later, different one is refused
        (answers to one request must not change). Columns it lacks or has besides will fit no
        request: it tells the model owner (a ``Reject``, code ``data``, that says no more than
        that) and stops with ConfigError naming them in its own log."""
        if self.schema is not None:
            if msg.features != self.schema:
                why = "a schema other than the first this owner took: it keeps the first"
                await send_all(node, [Send(self.model_owner, m.Reject(session=self.config.session, reason=why))])
            return
        try:
            note = self.work.match_columns(msg.features)
        except ConfigError:
            why = "its columns are not the model owner's"  # not which: a model owner could probe names
            reject = m.Reject(session=self.config.session, reason=why, code=m.Refusal.DATA)
            await send_all(node, [Send(self.model_owner, reject)])
            raise
        self.schema = msg.features
        if note is not None:
            node.logger(__name__).info("%s", note)

    async def stop_if_misfit(self, node: Transport, msg: m.StatsRequest | m.ModelUpdate) -> None:
        """A request for another number of features than this owner's data has: no request
        will ever fit (another file, another data set), so it tells the model owner (a
        ``Decline``, code ``data``) and stops with ConfigError naming its data."""
        have = self.work.features
        want = msg.features if isinstance(msg, m.StatsRequest) else _features(msg.mean)
        if not have or not want or have == want:
            return
        reason = f"its data has {have} features, the model takes {want}: it stops"
        decline = m.Decline(session=self.config.session, round_no=msg.round_no, reason=reason, code=m.Refusal.DATA)
        await send_all(node, [Send(self.model_owner, decline)])
        raise ConfigError(feature_misfit(self.config, self.config.player(self.name), have, want))

    def shares_for(self, msg: m.StatsRequest | m.ModelUpdate) -> _Outgoing:
        """This round's contribution, shared for the round's servers, or a ``Decline``. Runs
        without awaiting, so the caller can drop the model's frame before anything is sent."""
        config, round_no = self.config, msg.round_no
        out = _Outgoing(round_no, isinstance(msg, m.ModelUpdate))
        out.targets = set() if self.plain else set(msg.servers or self.servers)
        ident = input_id(msg)
        refused = self._refusal(msg, ident)
        if refused is not None:
            return self._decline(out, *refused)
        rows = None
        if self.ledger is not None:  # durably, before anything leaves
            why = self.ledger.spend(OwnerAnswers.step_of(msg) + 1)  # a tree position counts from 1
            if why is not None:
                return self._decline(out, m.Refusal.LEDGER, why)
            rows = self._tree_batch()
        try:
            vector = _contribution(self.work, msg, rows)
            if self.plain:
                gradient = m.PlainGradient(session=config.session, round_no=round_no, values=vector)
                out.sends = [Send(self.model_owner, gradient)]
            elif self.params.norm_bound and isinstance(msg, m.ModelUpdate):
                if (round_no, msg.norm) in self.signed:
                    why = f"it signed its norm digests for round {round_no} under this nonce once already"
                    return self._decline(out, m.Refusal.RERUN, why)
                key_or_none = MacKey(msg.mac_key) if msg.mac_key else None
                kid = key_id(msg.mac_key) if msg.mac_key else b""
                sign = None if self.signer is None else self.signer.sign
                out.sends = norm_shares(
                    self.params, self.name, round_no, vector, ident, key_or_none, kid, nonce=msg.norm, sign=sign
                )
                self.signed.append((round_no, msg.norm))
            elif msg.mac_key:
                key = MacKey(msg.mac_key)
                kid = key_id(msg.mac_key)
                out.sends = authenticated_shares(
                    self.params, round_no, vector, self.sharer, key, input_id=ident, key_id=kid
                )
            else:
                out.sends = contribution_shares(self.params, round_no, vector, self.sharer, ident)
            position = msg.step + 1 if rows is not None and isinstance(msg, m.ModelUpdate) else 0
            out.sends = [_naming(send, msg.servers, position) for send in out.sends]
            out.size = len(vector)
        except EncodingError as exc:  # indexes, never values; under [privacy] not even where
            public = "its contribution cannot be encoded" if self.config.privacy is not None else str(exc)
            return self._decline(out, m.Refusal.ENCODING, public, str(exc))
        except PluginError as exc:
            return self._decline(out, m.Refusal.PLUGIN, exc.public, str(exc))  # a plug-in's text stays here
        except ValueError as exc:  # under [privacy] not even the shapes (they may count its examples)
            public = "the request does not fit its data" if self.config.privacy is not None else str(exc)
            return self._decline(out, m.Refusal.PROTOCOL, public, str(exc))
        self.answers.record(ident, OwnerAnswers.step_of(msg))
        return out

    def _refusal(self, msg: m.StatsRequest | m.ModelUpdate, ident: bytes) -> tuple[m.Refusal, str] | None:
        """Why this owner does not answer ``msg`` (None: it does): under [privacy] nothing the
        noise does not protect; never an earlier request (``OwnerAnswers``). (Its own ledger is
        asked as it spends.)"""
        if self.config.privacy is not None and isinstance(msg, m.StatsRequest):
            return (
                m.Refusal.PRIVATE,
                "under [privacy] it shares no statistics of its data (the noise would not protect them)",
            )
        why = self.answers.refusal(ident, OwnerAnswers.step_of(msg))
        if why is not None:
            return m.Refusal.RERUN, why
        return None

    def _tree_batch(self) -> NDArray[np.int64] | None:
        """With mechanism "tree", the examples of the leaf just spent (``DataLedger.batch``)."""
        if self.ledger is None or self.ledger.tree is None or self.config.privacy is None:
            return None
        if self.config.privacy.mechanism != "tree":
            return None
        return self.ledger.batch(self.work.examples)

    def _decline(self, out: _Outgoing, code: m.Refusal, reason: str, logged: str = "") -> _Outgoing:
        """A ``Decline`` for the model owner instead of shares; ``logged`` (default: the reason)
        is what this owner's own log says."""
        out.declined = logged or reason
        decline = m.Decline(session=self.config.session, round_no=out.round_no, reason=reason, code=code)
        out.sends = [Send(self.model_owner, decline)]
        return out

    async def deliver(self, node: Transport, out: _Outgoing) -> None:
        """Send what ``shares_for`` made: to the round's servers that are connected."""
        config = self.config
        if out.declined:
            node.logger(__name__).error("round %d: cannot contribute: %s", out.round_no, out.declined)
            await send_all(node, out.sends)
            return
        # the round's servers may be (re)connecting just now: give them a moment
        await node.wait_until(functools.partial(_all_connected, node, out.targets), config.protocol.server_timeout)
        wanted = [s for s in out.sends if s.to == self.model_owner or (s.to in out.targets and s.to in node.peers)]
        out.sends = []  # the shares are not kept once sent (a swarm holds many)
        await send_all(node, wanted, timeout=config.protocol.server_timeout)
        del wanted
        self.contributed += 1
        if self.prepare_ahead and out.training:
            self.sharer.prepare((out.size,), out.round_no + 1)  # the next round's mask, while we wait


@dataclass
class _Outgoing:
    """A data owner's answer to one request, between making it and sending it."""

    round_no: int
    training: bool
    targets: set[str] = field(default_factory=set)
    sends: list[Send] = field(default_factory=list)
    size: int = 0
    declined: str = ""


def _data_ledger(config: Config, work: OwnerWorkload) -> DataLedger:
    """This owner's ledger for the data it holds, under the plan its own hosts.toml gives."""
    from asyncmpc.learning.privacy.plan import plan_for

    assert config.privacy is not None
    return DataLedger(plan_for(config, work.size), Path(config.privacy.ledger_dir), work.fingerprint())


def _naming(send: Send, servers: tuple[str, ...], position: int) -> Send:
    """An ``InputShare`` names the round's servers this owner was told, and with a tree the
    position it answered: a server whose round differs does not take it (``protocol.commitment``)."""
    if isinstance(send.msg, m.InputShare) and (servers or position):
        return Send(send.to, dataclasses.replace(send.msg, servers=servers, position=position))
    return send


def _features(mean: np.ndarray) -> int:
    """The number of features a model update's scaling is for (0: not a vector)."""
    return int(mean.shape[0]) if mean.ndim == 1 else 0


def _all_connected(node: Transport, names: set[str]) -> bool:
    return names <= node.peers.keys()


def _contribution(
    work: OwnerWorkload, msg: m.StatsRequest | m.ModelUpdate, rows: NDArray[np.int64] | None
) -> np.ndarray:
    if isinstance(msg, m.StatsRequest):
        return work.stats_vector()
    return work.contribution(msg.theta, msg.mean, msg.scale, msg.step, rows)
