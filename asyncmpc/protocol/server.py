"""The compute server's state machine (sans-I/O: messages in, ``Send`` actions out).

Per round: the model owner opens it (``OpenRound``: owners, shape); data owners send their
replicated share (``InputShare``), which is checked (sender expected, shape, no duplicate) and
kept; the server reports ``Holding`` once every expected owner is in, or when told
``CloseInputs``; on ``Aggregate`` it sums the named contributors' shares and answers with its
``ResultShare``. When the round was opened with a one-time tag key, a server that receives every
expected owner's share sends its ``ResultShare`` right away instead of ``Holding`` (the common
case costs no ``Aggregate`` round trip); the state stays until the next round, so an
``Aggregate`` over fewer owners can still follow. Input shares that arrive before their round
is opened wait (bounded), since the model owner and the data owners race to reach the server.

Epochs and restarts: a server's rounds belong to its connection with the model owner. When that
connection closes (the model owner crashed or restarted, or the network failed), the server
forgets every round, so a resumed model owner may open round numbers again; data owners draw
fresh stream keys whenever they lose the model owner (``ShareKeys`` then replaces the old
ones), so a round number opened again is masked by new streams. Input shares for a round
that is not open and not ahead are stale (from before a restart) and are ignored; shares
ahead of the newest round wait, for at most ``MAX_EARLY_ROUNDS`` round numbers per sender. A round stays
until the next one opens, so the model owner may ask for its sum again (in full, from two
servers, when the third was lost).

Keyed owners (``ShareKeys``, ``protocol.keyed``): their seed components are streams the
server knows ahead and expands while it has nothing to read; an owner that ends up not
contributing has its streams subtracted again.

Differential privacy (``[privacy]``): every server of a round deals noise into its sums when
the round opens (``protocol.noise``: a seed to the next server, a masked vector to the previous
one) and releases the round's sum only once every dealer's part is in, and for one set of
contributors only. MAC rounds, which open the noise-free sum, are refused. With a budget, a
server also counts the rounds it released and refuses to release more than the budget allows
(``release_limit``): a model owner that ignores its own ledger gets no more from the honest
servers.

MAC rounds (``OpenRound.mac``: after a dispute, and whenever a round runs on two servers) run
as ordinary rounds do, and also keep each owner's field components and a digest of its share
(``protocol.authenticated``): every answer carries the field sums, and the contributors'
digests (``ResultShare.digests``, or ``Holding.digests``).

Norm-checked rounds (``OpenRound.norm``, ``[protocol] norm_bound``): shares are in F_q with a
norm proof and wait for the round's servers' verdict before they enter the sums
(``protocol.servernorm``, whose handlers this class takes).

Every release, early or asked for, ordinary or MAC, passes the release rules this server keeps
from its own hosts.toml (``protocol.releases``): at least ``min_owners`` contributors, all
answering the same request (and, in a MAC round, tagging under the same key), one contributor
set per round, inputs released before only over the same set. A refusal is a
``Reject`` with its code (``Refusal``). A share that waited for its round and turns out wrong
when the round opens is blamed on its owner (``Drop``), not on the model owner whose
``OpenRound`` was being handled.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping

import numpy as np

from asyncmpc.config import Role
from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.field import P
from asyncmpc.crypto.normproof import NormSpec
from asyncmpc.crypto.prf import (
    MAC_KEY_BYTES,
    mac,
)
from asyncmpc.crypto.signing import NONCE_BYTES, Signer
from asyncmpc.errors import RemoteProtocolError
from asyncmpc.protocol.agreement import Agreement, Step
from asyncmpc.protocol.authenticated import RingPart, digest_pair, field_parts
from asyncmpc.protocol.commitment import Commitment, Verdict, release_set
from asyncmpc.protocol.events import Action, Drop, Send, check_sender
from asyncmpc.protocol.keyed import KeyedOwners
from asyncmpc.protocol.noise import NoiseDraw, PositionedDraw, deal
from asyncmpc.protocol.normcheck import NormChecks
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.positions import Positions
from asyncmpc.protocol.received import ring_parts, told_servers
from asyncmpc.protocol.releases import ReleaseLedger
from asyncmpc.protocol.servernorm import NormServer
from asyncmpc.protocol.sums import RoundPhase, RunningSums, Streams
from asyncmpc.protocol.waiting import Waiting
from asyncmpc.wire import messages as m
from asyncmpc.wire.messages import Refusal

__all__ = ["ServerProtocol"]

MAX_ELEMENTS = 1 << 31
"""The largest vector a round may aggregate (16 GiB per component)."""


class ServerProtocol(NormServer):
    """Compute server ``name`` of ``config``; call ``feed`` with every message received."""

    def __init__(
        self,
        params: Params,
        name: str,
        noise: NoiseDraw | None = None,
        release_limit: int | Callable[[int], int | None] | None = None,
        tree: tuple[PositionedDraw, Positions] | None = None,
    ) -> None:
        self.params = params
        self.name = name
        self.index = params.server_index(name)
        self.model_owner = params.model_owner
        self._rounds: dict[int, RunningSums] = {}
        self.waiting = Waiting()
        """Messages for rounds not opened here yet (shares, noise parts, peers' reports)."""
        self._newest = 0
        self._keyed = KeyedOwners()
        self._noise = noise
        """Under [privacy]: draws this server's noise for a round (None: no noise)."""
        self._release_limit = release_limit
        self._tree = tree
        """Under [privacy] mechanism "tree": the tree noise (position, dealers, shape) and the
        positions dealt (``protocol.positions``)."""
        self.releases = 0
        """Under [privacy]: rounds whose noisy sum this server released (this process)."""
        self.largest = 0
        """Elements of the largest round opened here (the runtime caps frames by it)."""
        self.ledger = ReleaseLedger(params.min_owners)
        """What this server released, across the model owner's epochs (``protocol.releases``)."""
        self.keys: Mapping[str, bytes] = {}
        """Players' public keys (``Transport.peer_keys``): a data owner's signs its norm digests."""
        self.signer: Signer | None = None
        """With TLS: this server's certificate key, which signs the norm values it opens."""

    # ------------------------------------------------------------ start-up

    def greet(self, peer: str) -> list[m.Message]:
        """Messages for a newly connected ``peer`` before anything else: under [privacy], the
        noise parts it is owed for the rounds still open here (a round may open before the
        servers have reached each other, or while one reconnects: a part sent then was lost,
        and one that arrives twice is the same part); in an early release, whom this server
        holds."""
        out: list[m.Message] = []
        for round_no, rnd in sorted(self._rounds.items()):
            for to, part in rnd.noise.owed if rnd.noise is not None else ():
                if self.params.servers[to] == peer:
                    out.append(m.NoiseShare(session=self.params.session, round_no=round_no, part=part))
            agreement = rnd.agreement
            if agreement is not None and agreement.own is not None and self._index_of(peer) in agreement.peers:
                out.append(self._inputs_held(round_no, agreement.own))
            pledge = rnd.commitment
            if pledge is not None and pledge.own is not None and self._index_of(peer) in pledge.peers:
                out.append(release_set(self.params.session, round_no, pledge.own))
        return out

    # ------------------------------------------------------------ messages

    def feed(self, sender: str, msg: m.Message) -> list[Action]:
        """Handle one message from ``sender``. Raises RemoteProtocolError if it breaks the rules."""
        check_sender(sender, self.params.role(sender), msg, self.params.session)
        return self._dispatch(sender, msg)

    def _dispatch(self, sender: str, msg: m.Message) -> list[Action]:
        if isinstance(msg, m.OpenRound):
            return self._open(sender, msg)
        if isinstance(msg, m.InputShare):
            return self._input(sender, msg)
        if isinstance(msg, m.CloseInputs):
            rnd = self._round(msg)
            return (
                [*self._norm_close(msg.round_no, rnd), self._holding(msg.round_no, rnd)]
                if rnd is not None
                else [self._unknown(msg)]
            )
        if isinstance(msg, m.Aggregate):
            return self._aggregate(sender, msg)
        if isinstance(msg, m.Withdraw):
            return self._withdraw(sender, msg)
        if isinstance(msg, m.ShareKeys):
            return self._share_keys(sender, msg)
        if isinstance(msg, m.NoiseShare):
            return self._noise_share(sender, msg)
        if isinstance(msg, m.InputsHeld):
            return self._peer_held(sender, msg)
        if isinstance(msg, m.ReleaseSet):
            return self._peer_committed(sender, msg)
        if isinstance(msg, m.NormOpened):
            return self._norm_opened(sender, msg)
        if isinstance(msg, m.Reject):
            return []
        raise RemoteProtocolError(f"a compute server does not take {msg.KIND!r} messages", peer=sender)

    def idle(self) -> None:
        """Nothing to read: expand the streams known so far into the open rounds' sums; with
        every round answered, expand the keyed streams of the round that will likely follow."""
        for rnd in self._rounds.values():
            if rnd.phase is not RoundPhase.SENT:
                rnd.flush()
        last = self._rounds.get(self._newest)
        if last is not None and last.phase is RoundPhase.SENT and last.norm is None:
            self._keyed.expand_next(self._newest, last)

    def forget(self, player: str) -> None:
        """``player``'s connection closed. A data owner that comes back registers its keys
        again; losing the model owner ends the epoch: every round is forgotten."""
        if player == self.model_owner:
            self._rounds.clear()
            self.waiting.clear()
            self._keyed.guess = None
            self._newest = 0
            return
        self._keyed.forget(player)

    def _share_keys(self, sender: str, msg: m.ShareKeys) -> list[Action]:
        if self._keyed.register(sender, msg.a, msg.b):
            # shares waiting from before were made under other keys (or on an older connection)
            self.waiting.drop_shares_of(sender)
        self._keyed.restream(sender, self._rounds)
        return []

    def _open(self, sender: str, msg: m.OpenRound) -> list[Action]:
        if msg.round_no <= self._newest:
            raise RemoteProtocolError(f"round {msg.round_no} is not after round {self._newest}", peer=sender)
        if not msg.owners:
            raise RemoteProtocolError(f"round {msg.round_no} opened with no owners", peer=sender)
        for owner in msg.owners:
            if self.params.roles.get(owner) != Role.DATA_OWNER:
                raise RemoteProtocolError(f"round {msg.round_no} names {owner!r}, not a data owner", peer=sender)
        if len(set(msg.owners)) != len(msg.owners):
            raise RemoteProtocolError(f"round {msg.round_no} names an owner twice", peer=sender)
        size = 1
        for dim in msg.shape:
            size *= dim
        if size > MAX_ELEMENTS:
            raise RemoteProtocolError(f"round {msg.round_no} of {size} elements, above {MAX_ELEMENTS}", peer=sender)
        if msg.mac_key and len(msg.mac_key) != MAC_KEY_BYTES:
            raise RemoteProtocolError(f"round {msg.round_no} opened with a MAC key that is not {MAC_KEY_BYTES} bytes")
        servers = self._round_servers(sender, msg)
        dealers = servers if self._noise is not None else None
        self._newest = msg.round_no
        self.largest = max(self.largest, size)
        shape = tuple(msg.shape)
        if msg.mac and self._noise is not None:
            why = "a MAC round opens the sum without noise; [privacy] forbids it"
            return [self._refuse(msg.round_no, Refusal.NO_MAC, why)]
        draw = self._noise
        if self._tree is not None or msg.position:
            if self._tree is None or not msg.position:
                why = f'round {msg.round_no}: a position is for [privacy] mechanism = "tree", and only there'
                raise RemoteProtocolError(why, peer=sender)
            refused = self._tree[1].take(msg.position, size)
            if refused is not None:
                return [self._refuse(msg.round_no, *refused)]
            draw = functools.partial(self._tree[0], msg.position)
        rnd = RunningSums(frozenset(msg.owners), shape, mac_key=msg.mac_key, full=msg.full, mac=msg.mac)
        rnd.servers, rnd.position = servers, msg.position
        if msg.norm:
            if not self.params.norm_bound:
                raise RemoteProtocolError(f"round {msg.round_no} is norm-checked, but norm_bound is off", peer=sender)
            if len(msg.norm) != NONCE_BYTES:
                raise RemoteProtocolError(f"round {msg.round_no}: a norm nonce that is not {NONCE_BYTES} bytes")
            rnd.norm = NormChecks(NormSpec(self.params.norm_bound, size), self.index, servers, msg.norm)
        if self._noise is not None:  # no early release: every server commits to one release first
            rnd.commitment = Commitment(servers - {self.index})
        elif msg.mac_key or msg.full:  # an early release: agreed with the round's other servers first
            rnd.agreement = Agreement(servers - {self.index})
        if rnd.norm is None:  # a norm-checked round's sums are in F_q: no ring streams in them
            self._keyed.open(rnd, msg.round_no)
        else:
            self._keyed.guess = None
        for old in [r for r in self._rounds if r < msg.round_no]:
            del self._rounds[old]  # a newer round supersedes one that never finished
        self._rounds[msg.round_no] = rnd
        out: list[Action] = [] if dealers is None or draw is None else self._deal(msg.round_no, rnd, dealers, draw)
        return out + self._replay(msg.round_no)

    def _round_servers(self, sender: str, msg: m.OpenRound) -> frozenset[int]:
        """The indices of the round's servers, this one among them (all three when the round
        names none): they agree on its contributors, and under [privacy] deal its noise."""
        named = msg.servers or self.params.servers
        indices = {self._index_of(s) for s in named}
        if None in indices or self.index not in indices or len(indices) != len(named) or len(named) < 2:
            why = f"round {msg.round_no} names servers {list(named)}: two or three servers, this one among them"
            raise RemoteProtocolError(why, peer=sender)
        return frozenset(i for i in indices if i is not None)

    def _index_of(self, name: str) -> int | None:
        return self.params.index(name)

    # ------------------------------------------------------------ messages ahead of their round

    def _hold_ahead(self, sender: str, msg: m.Message) -> list[Action]:
        self.waiting.hold(sender, msg, self._newest)
        return []

    def _replay(self, round_no: int) -> list[Action]:
        """Handle what waited for ``round_no``, which just opened: a message that turns out
        wrong now is its sender's fault (``Drop``), not the model owner's."""
        out: list[Action] = []
        for sender, msg in self.waiting.take(round_no):
            try:
                out += self._dispatch(sender, msg)
            except RemoteProtocolError as exc:
                out.append(Drop(sender, exc.with_peer(sender)))
        return out

    # ------------------------------------------------------------ noise ([privacy])

    def _deal(self, round_no: int, rnd: RunningSums, dealers: frozenset[int], draw: NoiseDraw) -> list[Action]:
        """Draw this server's noise for the round; the parts it owes the other dealers."""
        rnd.noise = deal(self.index, dealers, rnd.shape, draw, in_field=rnd.norm is not None)
        return [
            Send(self.params.servers[i], m.NoiseShare(session=self.params.session, round_no=round_no, part=part))
            for i, part in rnd.noise.owed
        ]

    def _noise_share(self, sender: str, msg: m.NoiseShare) -> list[Action]:
        dealer = self.params.server_index(sender)
        if self._noise is None:
            raise RemoteProtocolError("noise for a deployment without [privacy]", peer=sender)
        rnd = self._rounds.get(msg.round_no)
        if rnd is not None and rnd.noise is not None:
            rnd.noise.receive(dealer, msg.part, sender)
            if rnd.phase is RoundPhase.DEFERRED and rnd.noise.ready:
                assert rnd.due is not None
                (contributors, key), rnd.due = rnd.due, None
                return self._result(msg.round_no, rnd, contributors, key)
            return []
        if rnd is None:
            return self._hold_ahead(sender, msg)
        return []  # a round without noise

    def _input(self, sender: str, msg: m.InputShare) -> list[Action]:
        rnd = self._rounds.get(msg.round_no)
        if rnd is not None:
            return self._accept(sender, msg, msg.round_no, rnd)
        return self._hold_ahead(sender, msg)

    def _accept(self, sender: str, msg: m.InputShare, round_no: int, rnd: RunningSums) -> list[Action]:
        if sender not in rnd.owners:
            raise RemoteProtocolError(f"not an expected owner of round {round_no}", peer=sender)
        if sender in rnd.held or sender in rnd.pending:
            raise RemoteProtocolError(f"second input share for round {round_no}", peer=sender)
        if not rnd.inputs_open and len(rnd.held) < len(rnd.owners):
            raise RemoteProtocolError(f"input share for round {round_no} came after its inputs closed", peer=sender)
        if not rnd.mac and (msg.ma is not None or msg.mb is not None):
            raise RemoteProtocolError(f"round {round_no} is not a MAC round, but the share carries one", peer=sender)
        if told_servers(self.params, sender, msg) != rnd.servers or msg.position != rnd.position:
            return []  # the owner was told other servers, or another position: not for this round
        if rnd.norm is not None:
            return self._norm_input(sender, msg, round_no, rnd)
        if msg.norm_a is not None or msg.norm_b is not None or msg.norm_digests:
            raise RemoteProtocolError(
                f"round {round_no} is not norm-checked, but the share carries a proof", peer=sender
            )
        return self._admit(sender, msg, round_no, rnd, ring_parts(self._keyed, sender, msg, round_no, rnd.shape))

    def _admit(
        self, sender: str, msg: m.InputShare, round_no: int, rnd: RunningSums, parts: tuple[RingPart, RingPart]
    ) -> list[Action]:
        """Add ``sender``'s components to the round's sums; report once every owner is in."""
        self._add(sender, msg, round_no, rnd, parts)
        if len(rnd.held) == len(rnd.owners) and rnd.inputs_open:
            return self._complete(round_no, rnd)
        return []

    def _add(
        self, sender: str, msg: m.InputShare, round_no: int, rnd: RunningSums, parts: tuple[RingPart, RingPart]
    ) -> None:
        """Add ``sender``'s components to the round's sums (in F_q in a norm-checked round)."""
        if rnd.mac:  # before a vector is added: the sum may be that vector's own buffer
            rnd.fields[sender] = field_parts(sender, round_no, msg)
            rnd.digests[sender] = digest_pair(parts, rnd.fields[sender])
        streams = [p if isinstance(p, tuple) else None for p in parts]
        own: Streams = (streams[0], streams[1])
        if rnd.streams.get(sender, own) != own:
            rnd.drop_streams(sender)  # expected keyed, sent otherwise
        if own != (None, None):
            rnd.streams.setdefault(sender, own)
        for i, comp in enumerate(parts):
            if isinstance(comp, tuple):
                continue
            rnd.vectors.add(sender)
            acc = rnd.sums[i]
            if acc is None:  # adopt the received vector (a view of its frame) as the sum
                rnd.sums[i] = comp if comp.flags.writeable and comp.flags.c_contiguous else comp.copy()
            elif rnd.norm is not None:
                acc.view(np.uint64)[...] = gf.add(acc.view(np.uint64), comp.view(np.uint64))
            else:
                np.add(acc, comp, out=acc)
        rnd.held.add(sender)
        rnd.inputs[sender] = (msg.input_id, msg.key_id)

    def _complete(self, round_no: int, rnd: RunningSums) -> list[Action]:
        """Every expected owner is in: with an early release, tell the round's other servers
        whom this one holds and release once one of them holds the same (``_agreed``); else
        ``Holding``."""
        if rnd.agreement is None:
            return [self._holding(round_no, rnd)]
        rnd.agreement.own = frozenset(rnd.held)
        told = self._inputs_held(round_no, rnd.agreement.own)
        out: list[Action] = [Send(self.params.servers[i], told) for i in sorted(rnd.agreement.peers)]
        return out + self._agreed(round_no, rnd)

    def _agreed(self, round_no: int, rnd: RunningSums) -> list[Action]:
        """Release early over the agreed set, report ``Holding`` when no one agrees, or wait."""
        if rnd.agreement is None or not rnd.inputs_open:
            return []
        step = rnd.agreement.step()
        if step is Step.REPORT:
            return [self._holding(round_no, rnd)]
        if step is Step.WAIT:
            return []
        contributors = tuple(sorted(rnd.held))
        refused = self.ledger.refusal(contributors, rnd.inputs, rnd.released)
        if refused is not None:
            rnd.enter(RoundPhase.REPORTED)
            return [self._refuse(round_no, *refused)]
        key, rnd.mac_key = rnd.mac_key, b""  # one-time: an Aggregate brings a fresh key
        rnd.settle(rnd.held)
        return self._result(round_no, rnd, contributors, key)

    def _inputs_held(self, round_no: int, owners: frozenset[str]) -> m.InputsHeld:
        return m.InputsHeld(session=self.params.session, round_no=round_no, owners=tuple(sorted(owners)))

    def _peer_held(self, sender: str, msg: m.InputsHeld) -> list[Action]:
        """Another server of the round holds ``msg.owners``."""
        if len(set(msg.owners)) != len(msg.owners):
            raise RemoteProtocolError(f"round {msg.round_no}: an owner named twice", peer=sender)
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            return self._hold_ahead(sender, msg)
        peer = self._index_of(sender)
        if rnd.agreement is None or peer is None or not rnd.agreement.hear(peer, frozenset(msg.owners), sender):
            return []  # a round without an early release, or one this server is not part of
        return self._agreed(msg.round_no, rnd)

    def _result(self, round_no: int, rnd: RunningSums, contributors: tuple[str, ...], key: bytes) -> list[Action]:
        """This server's ``ResultShare``: a in full, b as a tag under ``key`` or (no key) in full.
        Under [privacy] it waits for every dealer's noise (``deferred``). The callers (an early
        release, an ``Aggregate``) checked the release rules before the sums could change."""
        out: list[Action] = []
        if rnd.commitment is not None and rnd.noise is not None and not rnd.noise.applied:
            out, verdict = self._commit(round_no, rnd, contributors)
            if verdict is Verdict.DIFFER:
                rnd.enter(RoundPhase.REPORTED)
                why = "the round's other servers were asked for another release (servers or contributors)"
                return [*out, self._refuse(round_no, Refusal.OTHER_SET, why)]
            if verdict is Verdict.WAIT:
                rnd.enter(RoundPhase.DEFERRED)
                rnd.due = (contributors, key)
                return out
        if rnd.noise is not None and not rnd.noise.ready:
            rnd.enter(RoundPhase.DEFERRED)
            rnd.due = (contributors, key)
            return out
        if rnd.noise is not None and not rnd.noise.applied:
            limit = self._release_limit
            if callable(limit):  # by the contribution's size: the noise is calibrated per size
                limit = limit(math.prod(rnd.shape))
            if limit is not None and self.releases >= limit:
                rnd.enter(RoundPhase.REPORTED)
                why = f"the [privacy] budget allows {limit} releases, and this server made them all"
                return [self._refuse(round_no, Refusal.BUDGET, why)]
            self.releases += 1
        rnd.flush()
        if rnd.noise is not None:
            rnd.noise.apply(rnd.sums)
        rnd.released = frozenset(contributors)
        self.ledger.record(contributors, rnd.inputs)
        rnd.enter(RoundPhase.SENT)
        a, b = rnd.sum(0), rnd.sum(1)
        common = {"session": self.params.session, "round_no": round_no, "contributors": contributors}
        full_b: dict[str, object] = {"b": b} if not key else {"b_tag": mac(key, b)}
        if rnd.mac:
            ma, mb = (np.array([sum(rnd.fields[o][i] for o in contributors) % P], dtype=np.int64) for i in (0, 1))
            full_b.update(ma=ma, mb=mb, digests=tuple(rnd.digests[o] for o in contributors))
        return [*out, Send(self.model_owner, m.ResultShare(**common, **full_b, a=a))]  # type: ignore[arg-type]

    def _commit(self, round_no: int, rnd: RunningSums, contributors: tuple[str, ...]) -> tuple[list[Action], Verdict]:
        """Under [privacy]: commit to releasing over ``contributors`` (``protocol.commitment``)."""
        assert rnd.commitment is not None
        release = (tuple(self.params.servers[i] for i in sorted(rnd.servers)), contributors, rnd.position)
        sends, verdict = rnd.commitment.pledge(release, self.params.session, round_no, self.params.servers)
        return list(sends), verdict

    def _peer_committed(self, sender: str, msg: m.ReleaseSet) -> list[Action]:
        """Another server of the round committed to ``msg``'s release: a result that waited
        for it may go out (or is refused, if the releases differ)."""
        rnd = self._rounds.get(msg.round_no)
        if rnd is None:
            return self._hold_ahead(sender, msg)
        peer = self._index_of(sender)
        release = (tuple(msg.servers), tuple(msg.contributors), msg.position)
        if rnd.commitment is None or peer is None or not rnd.commitment.hear(peer, release, sender):
            return []
        if rnd.phase is RoundPhase.DEFERRED and rnd.due is not None:
            (contributors, key), rnd.due = rnd.due, None
            return self._result(msg.round_no, rnd, contributors, key)
        return []

    def _withdraw(self, sender: str, msg: m.Withdraw) -> list[Action]:
        rnd = self._round(msg)
        if rnd is None or not rnd.inputs_open:
            return []
        # stop waiting for owners whose share has not come; one that is here stays (the model
        # owner keeps it if every server holds it, and asks the others to leave it out if not)
        gone = frozenset(o for o in msg.owners if o not in rnd.held and o not in rnd.pending)
        rnd.owners = rnd.owners - gone
        for owner in gone:
            rnd.drop_streams(owner)
        if len(rnd.held) == len(rnd.owners):
            return self._complete(msg.round_no, rnd)
        return []

    def _holding(self, round_no: int, rnd: RunningSums) -> Send:
        if rnd.inputs_open:
            rnd.enter(RoundPhase.REPORTED)
        held = tuple(sorted(rnd.held))
        digests = tuple(rnd.digests[o] for o in held) if rnd.mac else ()
        holding = m.Holding(session=self.params.session, round_no=round_no, owners=held, digests=digests)
        return Send(self.model_owner, holding)

    def _round(self, msg: m.Message) -> RunningSums | None:
        return self._rounds.get(msg.round_no)

    def _refuse(self, round_no: int, code: Refusal, why: str) -> Send:
        """A ``Reject`` of the model owner's ask about round ``round_no``."""
        reject = m.Reject(session=self.params.session, round_no=round_no, reason=f"round {round_no}: {why}", code=code)
        return Send(self.model_owner, reject)

    def _unknown(self, msg: m.Message) -> Send:
        """A ``Reject`` for the model owner's request about a round this server does not have
        (it restarted, or the round was superseded): the model owner goes on without us."""
        why = f"{msg.KIND!r} for a round that is not open at {self.name}"
        return self._refuse(msg.round_no, Refusal.UNKNOWN_ROUND, why)

    def _aggregate(self, sender: str, msg: m.Aggregate) -> list[Action]:
        rnd = self._round(msg)
        if rnd is None:
            return [self._unknown(msg)]
        if not msg.contributors or len(set(msg.contributors)) != len(msg.contributors):
            raise RemoteProtocolError(f"aggregate of round {msg.round_no} names no owner, or one twice", peer=sender)
        if len(msg.mac_key) != MAC_KEY_BYTES and not msg.full:
            raise RemoteProtocolError(
                f"aggregate of round {msg.round_no} has no {MAC_KEY_BYTES}-byte MAC key", peer=sender
            )
        missing = [o for o in msg.contributors if o not in rnd.held]
        if missing:
            why = f"it does not hold (or has left out) {', '.join(missing)}"
            return [self._refuse(msg.round_no, Refusal.NOT_HELD, why)]
        refused = self.ledger.refusal(msg.contributors, rnd.inputs, rnd.released)
        if refused is not None:  # before the sums change: the set released may be asked again
            return [self._refuse(msg.round_no, *refused)]
        if rnd.phase is RoundPhase.SENT:
            # a result went out with these arrays, which may still be in a send buffer
            rnd.sums = [rnd.sum(0).copy(), rnd.sum(1).copy()]
        stuck = rnd.settle(set(msg.contributors))
        if stuck:
            why = f"cannot leave out {', '.join(stuck)}: a vector share of theirs is in this server's sum"
            return [self._refuse(msg.round_no, Refusal.STUCK, why)]
        return self._result(msg.round_no, rnd, tuple(msg.contributors), b"" if msg.full else msg.mac_key)

    @property
    def open_rounds(self) -> tuple[int, ...]:
        return tuple(sorted(self._rounds))

    def _to_model_owner(self, reply: m.Message | None) -> list[Action]:
        return [] if reply is None else [Send(self.model_owner, reply)]
