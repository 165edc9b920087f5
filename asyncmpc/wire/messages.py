"""Every message type, declared once, with its fields and the roles that may send it.

Each message is a frozen dataclass with ``KIND`` (its name on the wire) and ``SENDERS`` (roles
allowed to send it). Every message carries the envelope fields ``session`` (the deployment's
session id) and ``round_no`` (0 outside rounds). The sender is *not* a field: it is the
authenticated player at the other end of the connection, which a message cannot forge.

Field types the codec knows: ``int``, ``float``, ``str``, ``bytes``, ``tuple[str, ...]``,
``tuple[int, ...]`` (shapes), ``RingArray`` (int64 array), ``FloatArray`` (float64 array) and
``Component`` (an int64 array, a 16-byte seed, or empty bytes for ``KEYED``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Role
from asyncmpc.crypto.ring import RingArray
from asyncmpc.crypto.rss import Component, Seed

__all__ = [
    "ALL_ROLES",
    "MESSAGES",
    "PROTOCOL_VERSION",
    "Aggregate",
    "CloseInputs",
    "Decline",
    "Exclude",
    "ModelUpdate",
    "StatsRequest",
    "Withdraw",
    "Finish",
    "Component",
    "FloatArray",
    "Hello",
    "Holding",
    "InputShare",
    "InputsHeld",
    "ReleaseSet",
    "Message",
    "NoiseShare",
    "NormEvidence",
    "NormOpened",
    "NormVerdict",
    "OpenRound",
    "PlainGradient",
    "Refusal",
    "Reject",
    "ResultShare",
    "RingArray",
    "Schema",
    "Seed",
    "ShareKeys",
]

PROTOCOL_VERSION = 15
"""2: keyed share components and ShareKeys; streams from counter block nonce || 2.
3: two-server rounds (OpenRound.full), the round's servers in ModelUpdate and StatsRequest,
ShareKeys may replace earlier keys.
4: MAC rounds (OpenRound.mac, the MAC key in ModelUpdate and StatsRequest, field shares in
InputShare and ResultShare, digests in Holding), ModelUpdate.step, Exclude.
5: differential privacy: OpenRound.servers, NoiseShare.
6: refusal codes (Reject.code, Decline.code), InputShare.input_id, InputsHeld; servers enforce
the release rules (minimum contributors, one contributor set per round, re-runs over the same
set) and agree on the contributors before an early release.
7: BLAKE3 digests of an owner's components (Holding.digests, ResultShare.digests).
8: refusal codes ``private`` and ``ledger``: under [privacy] a data owner declines what the
noise does not protect, and anything beyond its own ledger of its data's releases.
9: InputShare.servers (the servers the owner was told) and ReleaseSet: under [privacy] the
servers of a round commit to one release and release only when all of them committed to it.
10: position in OpenRound, InputShare and ReleaseSet: DP-FTRL (mechanism "tree").
11: Hello.settings, refusal code ``settings``: every player checks its peers' shared settings.
12: StatsRequest.features, refusal code ``data``: an owner whose data has another number of
features than the model owner's stops.
13: Schema: the model owner names its features' columns to every data owner it connects to; an
owner with a CSV file takes its columns by those names.
14: the norm check ([protocol] norm_bound): InputShare.norm_a, norm_b and norm_digests (an owner's
field components with its witness and proofs), NormOpened between servers, NormVerdict to the
model owner.
15: an owner signs its norm digests (InputShare.norm_signature) under the round's nonce
(OpenRound.norm and ModelUpdate.norm, bytes where 14 had a flag); NormOpened.signature forwards it;
NormVerdict.waiting; servers sign NormOpened (server_signature, with input_id), and a server
proves another's lie to the model owner with NormEvidence."""
FloatArray = NDArray[np.float64]


MO, DO, CS = Role.MODEL_OWNER, Role.DATA_OWNER, Role.COMPUTE_SERVER
ALL_ROLES = frozenset(Role)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Message:
    KIND: ClassVar[str] = ""
    SENDERS: ClassVar[frozenset[str]] = frozenset()
    session: str
    round_no: int = 0

    def __repr__(self) -> str:
        """Field values, with arrays and seeds shown only by shape: a log line never holds a share."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                shown = f"<{value.dtype} {value.shape}>"
            elif isinstance(value, bytes):
                shown = f"<{len(value)} bytes>"
            elif isinstance(value, tuple) and value and isinstance(value[0], bytes):
                shown = f"<{len(value)} digests>"
            else:
                shown = repr(value)
            parts.append(f"{f.name}={shown}")
        return f"{type(self).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Hello(Message):
    """First frame on every connection, from both sides: who I am and what I speak."""

    KIND = "hello"
    SENDERS = ALL_ROLES
    player: str
    version: int = PROTOCOL_VERSION
    settings: str = ""
    """The sender's shared settings (``config.shared``): a peer whose settings differ is refused."""


class Refusal(StrEnum):
    """Why a message was refused (``Reject.code``) or a round declined (``Decline.code``): the
    receiver branches on the code, never on the free text beside it (docs/protocol.md)."""

    PROTOCOL = "protocol"
    """The message broke the protocol's rules; the connection is closed after the ``Reject``."""
    UNKNOWN_ROUND = "unknown_round"
    """The round is not open at this server (it restarted, or a newer round superseded it)."""
    NOT_HELD = "not_held"
    """The contributors name an owner whose share this server does not hold (or has left out)."""
    STUCK = "stuck"
    """An owner cannot be left out: a vector share of its is in this server's sum already."""
    TOO_FEW = "too_few"
    """Fewer contributors than the server's own ``min_owners``: nothing is released."""
    OTHER_SET = "other_set"
    """The round's sum was released for another contributor set: one set per round."""
    RERUN = "rerun"
    """The inputs were released before (same model and step) over another contributor set."""
    MIXED = "mixed"
    """The contributors' shares answer different requests (their ``input_id``s differ): a
    model owner that sent owners different models could read one owner's input off the sum."""
    BUDGET = "budget"
    """The server's own ``[privacy]`` budget allows no more releases."""
    NO_MAC = "no_mac"
    """Under ``[privacy]`` a MAC round would open the sum without noise: refused."""
    SETTINGS = "settings"
    """The peer's shared settings differ from the receiver's (``config.shared``)."""
    PRIVATE = "private"
    """Under ``[privacy]`` a data owner answers nothing the noise does not protect: a
    statistics request is declined."""
    LEDGER = "ledger"
    """Under ``[privacy]`` the data owner's own ledger of its data's releases allows no more."""
    ENCODING = "encoding"
    """A data owner's values cannot be encoded (NaN, infinite, out of range)."""
    PLUGIN = "plugin"
    """A data owner's model plug-in failed."""
    DATA = "data"
    """A data owner's data can answer no request of this deployment (another number of
    features than the model takes): it stops."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Reject(Message):
    """The sender refused a message from the receiver: ``code`` says why, ``reason`` adds the
    details for a log line (indexes and keys, never values)."""

    KIND = "reject"
    SENDERS = ALL_ROLES
    reason: str
    code: Refusal = Refusal.PROTOCOL


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class OpenRound(Message):
    """The model owner opens round ``round_no`` at a server: who may contribute, what shape."""

    KIND = "open_round"
    SENDERS = frozenset({MO})
    owners: tuple[str, ...]
    shape: tuple[int, ...]
    mac_key: bytes = b""
    """A one-time Poly1305 key for this server only. With it, a server that receives every
    owner's share sends its ``ResultShare`` at once, without waiting for ``Aggregate``."""
    full: bool = False
    """The round runs on two servers (the third is down): a server that receives every
    owner's share sends its ``ResultShare`` at once, with both components in full."""
    mac: bool = False
    """A MAC round (``protocol.authenticated``): every input share carries field shares of
    its MAC tag, the server reports ``Holding`` with a digest of each owner's components and
    answers ``Aggregate`` with both components and both field sums in full."""
    servers: tuple[str, ...] = ()
    """The servers the round runs on (under [privacy] each of them deals noise into it)."""
    norm: bytes = b""
    """A norm-checked round's nonce (``[protocol] norm_bound``; ``signing.NONCE_BYTES`` random
    bytes, the same for every server and owner of the round; empty: not norm-checked): input
    shares are in F_q with a norm proof, their digests signed under this nonce; an owner whose
    input fails is left out and named (``NormVerdict``)."""
    position: int = 0
    """Under [privacy] mechanism "tree": the round's position p, from 1 (leaf (p - 1) % epoch_steps
    of tree (p - 1) // epoch_steps; the model owner's step plus 1); 0 otherwise. A server takes
    positions in increasing order only (``protocol.positions``)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NoiseShare(Message):
    """Under [privacy], a server's part of its noise for round ``round_no`` (``protocol.noise``):
    a seed for the next server, a masked vector for the previous one."""

    KIND = "noise_share"
    SENDERS = frozenset({CS})
    part: Component


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class InputShare(Message):
    """A data owner's replicated share for one server: components (x_i, x_{i+1}), each a
    vector, a seed, or ``KEYED`` (the round's stream of a key registered with ``ShareKeys``)."""

    KIND = "input_share"
    SENDERS = frozenset({DO})
    shape: tuple[int, ...]
    a: Component
    b: Component
    ma: RingArray | None = None
    """In a MAC round: the components (t_i, t_{i+1}) of the field shares of the owner's tag
    t = <r, x> mod p (``macs``), one field element each (sent as int64)."""
    mb: RingArray | None = None
    input_id: bytes = b""
    """What the shared vector was computed from (``protocol.releases.input_id``: a digest of
    the request's model, scaling and step, the same for a re-run of the same step): a server
    releases a sum holding inputs it released before only over the same contributors."""
    key_id: bytes = b""
    """In a MAC round, a digest of the MAC key the owner tagged with (``protocol.releases.key_id``):
    every contributor of a round must have been sent the same key."""
    servers: tuple[str, ...] = ()
    """The round's servers as the model owner told this owner (empty: all three): a server whose
    round was opened for other servers does not take the share (``protocol.commitment``)."""
    position: int = 0
    """Under [privacy] mechanism "tree": the position the owner answered (its request's step + 1);
    a server whose round is at another position does not take the share."""
    norm_a: RingArray | None = None
    """With ``[protocol] norm_bound``: ``a`` and ``b`` are the owner's components in F_q
    (``crypto.normproof``, as int64 words), and these are their parts of the witness and proofs."""
    norm_b: RingArray | None = None
    norm_digests: tuple[bytes, ...] = ()
    norm_signature: bytes = b""
    """The owner's signature of its digests under the round's nonce (``crypto.signing``), with the
    key of its TLS certificate (empty in a deployment without TLS)."""
    """With ``norm_bound``: the digests of all three components (``normproof.DIGESTS``)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ShareKeys(Message):
    """A data owner registers, once per connection, the long-term keys of this server's share
    components that it will send as ``KEYED`` (the round's stream of the key): 16 bytes each,
    or empty for a component it sends as vectors."""

    KIND = "share_keys"  # sent again (new keys) after the owner lost the model owner
    SENDERS = frozenset({DO})
    a: bytes
    b: bytes


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class CloseInputs(Message):
    """The model owner stops waiting for inputs: the server answers with ``Holding`` now."""

    KIND = "close_inputs"
    SENDERS = frozenset({MO})


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Holding(Message):
    """A server reports the owners whose complete shares it holds for the round."""

    KIND = "holding"
    SENDERS = frozenset({CS})
    owners: tuple[str, ...]
    digests: tuple[bytes, ...] = ()
    """In a MAC round: per owner, a digest of each of its two components as this server
    received them (``protocol.authenticated.DIGEST_BYTES`` each, concatenated)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class InputsHeld(Message):
    """A server tells the round's other servers whose shares it holds, once its inputs are
    complete: it answers early only when another server holds the same (``protocol.agreement``)."""

    KIND = "inputs_held"
    SENDERS = frozenset({CS})
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ReleaseSet(Message):
    """Under [privacy], a server tells the round's other servers the one release it committed
    to: it releases only when every one of them committed to the same (``protocol.commitment``)."""

    KIND = "release_set"
    SENDERS = frozenset({CS})
    servers: tuple[str, ...]
    contributors: tuple[str, ...]
    position: int = 0


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NormOpened(Message):
    """A server's opened norm-check values on the two components of ``owner``'s input it holds,
    with the owner's digests as it received them (``protocol.normcheck``)."""

    KIND = "norm_opened"
    SENDERS = frozenset({CS})
    owner: str
    digests: tuple[bytes, ...]
    a: RingArray
    b: RingArray
    signature: bytes = b""
    """The owner's signature of ``digests`` (``InputShare.norm_signature``), as received."""
    input_id: bytes = b""
    """The owner's ``InputShare.input_id``, as received (in the proof's context and the signed statement)."""
    server_signature: bytes = b""
    """The sender's signature of what it opened (``signing.opened_statement``; empty without TLS)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NormVerdict(Message):
    """A server tells the model owner the owners whose input failed the norm check (left out of
    its sum), or the servers whose norm-check reports differ from its own (a dispute)."""

    KIND = "norm_verdict"
    SENDERS = frozenset({CS})
    failed: tuple[str, ...] = ()
    suspects: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    """Every owner's share is at the sender, and verdicts wait only for these servers' values:
    the model owner counts the sender as having answered the inputs phase, so a server that
    never had a share (or withholds its values) is told ``CloseInputs`` after
    ``server_timeout``, not half a ``round_timeout``."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class NormEvidence(Message):
    """A server's proof to the model owner that ``accused`` lied in its ``NormOpened`` on
    ``owner`` (``protocol.normcourt``): the accused's message as it came (``owner`` to
    ``server_signature``, the accused's signature over it), and, when the values are at issue,
    the sender's copy of ``component``, which both hold, with its norm part (``x``,
    ``payload``). One component of one owner's sharing, alone, is uniform in F_q."""

    KIND = "norm_evidence"
    SENDERS = frozenset({CS})
    accused: str
    owner: str
    digests: tuple[bytes, ...]
    a: RingArray
    b: RingArray
    signature: bytes
    input_id: bytes
    server_signature: bytes
    component: int = 0
    x: RingArray | None = None
    """The sender's copy of ``component`` (nil: the accused forwarded a list the owner did not sign)."""
    payload: RingArray | None = None


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Aggregate(Message):
    """The model owner fixes the contributor set; servers sum those owners' shares."""

    KIND = "aggregate"
    SENDERS = frozenset({MO})
    contributors: tuple[str, ...]
    mac_key: bytes
    """A one-time Poly1305 key for this server only: it tags its ``b`` instead of sending it."""
    full: bool = False
    """Send ``b`` in full (when fewer than three servers answer, nothing can be cross-checked)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ResultShare(Message):
    """Server i's share of the sum over ``contributors``: x_i in full, and x_{i+1} either in full
    or as its Poly1305 tag under the model owner's one-time key (which server i+1, sending
    x_{i+1} in full, never sees): one vector per server instead of two, still cross-checked."""

    KIND = "result_share"
    SENDERS = frozenset({CS})
    contributors: tuple[str, ...]
    a: RingArray
    b: RingArray | None = None
    b_tag: bytes = b""
    ma: RingArray | None = None
    """In a MAC round: the field sums of the MAC tag components (one element each)."""
    mb: RingArray | None = None
    digests: tuple[bytes, ...] = ()
    """In a MAC round: per contributor, in order, the digest pair of its share as this server
    received it (as in ``Holding``)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class StatsRequest(Message):
    """The model owner asks a data owner to share ``[n, sum(x), sum(x^2)]`` of its data."""

    KIND = "stats_request"
    SENDERS = frozenset({MO})
    servers: tuple[str, ...] = ()
    """The servers of the round, to which the owner sends its shares (empty: all three)."""
    mac_key: bytes = b""
    """In a MAC round: the MAC key (``macs.MacKey``), for the data owners only (empty: no MAC)."""
    features: int = 0
    """How many features the model owner's model takes (0: not said): an owner whose data has
    another number stops (``Refusal.DATA``)."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class ModelUpdate(Message):
    """The model owner sends the current parameters and feature scaling; the data owner answers
    by sharing its contribution (gradient and loss) to the servers for round ``round_no``."""

    KIND = "model_update"
    SENDERS = frozenset({MO})
    theta: FloatArray
    mean: FloatArray
    scale: FloatArray
    servers: tuple[str, ...] = ()
    """The servers of the round, to which the owner sends its shares (empty: all three)."""
    mac_key: bytes = b""
    """In a MAC round: the MAC key (``macs.MacKey``), for the data owners only (empty: no MAC)."""
    step: int = 0
    """The training step: which batch the owner computes on (a re-run keeps it, with a new
    round number)."""
    norm: bytes = b""
    """A norm-checked round's nonce (as in ``OpenRound.norm``): the owner signs its digests under it."""


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class PlainGradient(Message):
    """A data owner's contribution in the clear: only in the plaintext benchmark mode
    (``aggregation = "plain"``), which a secure model owner refuses."""

    KIND = "plain_gradient"
    SENDERS = frozenset({DO})
    values: FloatArray


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Decline(Message):
    """A data owner will not contribute to this round: ``code`` says why, ``reason`` adds
    indexes and keys for a log line, never values."""

    KIND = "decline"
    SENDERS = frozenset({DO})
    reason: str
    code: Refusal = Refusal.PROTOCOL


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Withdraw(Message):
    """The model owner tells a server to stop waiting for these owners in this round."""

    KIND = "withdraw"
    SENDERS = frozenset({MO})
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Exclude(Message):
    """The model owner has proof that ``server`` cheated: stop talking to it for the session."""

    KIND = "exclude"
    SENDERS = frozenset({MO})
    server: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Schema(Message):
    """The model owner's greeting to a data owner: the names of the features its model takes,
    in order (its test file's header; empty where the data names none). An owner whose CSV
    file names its columns takes them by these names, in this order."""

    KIND = "schema"
    SENDERS = frozenset({MO})
    features: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Finish(Message):
    """The model owner ends the session: every other player finishes its work and exits."""

    KIND = "finish"
    SENDERS = frozenset({MO})
    reason: str = "done"


MESSAGES: dict[str, type[Message]] = {
    cls.KIND: cls
    for cls in (
        Hello,
        Reject,
        Finish,
        Schema,
        OpenRound,
        NoiseShare,
        InputShare,
        NormOpened,
        NormVerdict,
        NormEvidence,
        ShareKeys,
        CloseInputs,
        Holding,
        InputsHeld,
        ReleaseSet,
        Aggregate,
        ResultShare,
        StatsRequest,
        ModelUpdate,
        PlainGradient,
        Decline,
        Withdraw,
        Exclude,
    )
}
