"""A deployment as frozen dataclasses (``Config`` and its tables), and the one ``Role`` enum.

``parse.parse_config`` builds them from a hosts.toml, validated once; everything else only
reads them.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asyncmpc.errors import ConfigError

__all__ = [
    "PLAYER_NAME",
    "is_loopback_address",
    "LISTENING_ROLES",
    "Role",
    "Config",
    "Player",
    "PrivacySettings",
    "ProtocolSettings",
    "TrainingSettings",
    "AGGREGATIONS",
    "DATASETS",
    "DEFAULT_LEDGER_DIR",
    "MAC_ROUNDS",
    "MODELS",
    "OPTIMIZERS",
    "PRIVACY_MECHANISMS",
    "PRIVACY_UNITS",
    "SPLITS",
    "WEIGHTINGS",
]


class Role(StrEnum):
    """A player's role: the one list of roles (hosts.toml's ``role``, and who may send which
    message in ``wire.messages``)."""

    MODEL_OWNER = "model-owner"
    DATA_OWNER = "data-owner"
    COMPUTE_SERVER = "compute-server"


LISTENING_ROLES = frozenset({Role.MODEL_OWNER, Role.COMPUTE_SERVER})


@dataclass(frozen=True, slots=True)
class Player:
    name: str
    role: Role
    host: str
    """The address others dial (empty for a data owner that gives none: it only dials out)."""
    port: int | None
    index: int | None = None
    """Server index 0..2 for compute servers, data-owner index for data owners, else None."""
    csv: str | None = None
    """A data owner's training file (or the model owner's test file) when dataset = "csv"."""
    label_column: str = "label"
    bind: str = ""
    """The address a listening player listens on (``bind``; default: ``host``)."""

    @property
    def listen_host(self) -> str:
        return self.bind or self.host

    @property
    def is_loopback(self) -> bool:
        """Whether every address of this player is on loopback (a data owner without a
        ``host`` only dials out, to the addresses of the others)."""
        return all(is_loopback_address(a) for a in (self.host, self.bind) if a)


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    frac_bits: int = 16
    min_owners: int = 2
    max_owners: int = 1000
    connect_timeout: float = 30.0
    """Seconds to wait at start-up for the players a role needs before it gives up."""
    round_timeout: float = 60.0
    """Seconds a round may take; also the deadline for a frame, once begun, to arrive whole."""
    server_timeout: float = 5.0
    """Seconds a compute server may stay silent after two others answered a round, before the
    round goes on without it (and it is disconnected, to be redialled)."""
    idle_timeout: float = 600.0
    """Seconds a data owner or compute server waits for an absent or silent model owner before
    it exits; also how long a model owner pauses with fewer than two servers before it gives up."""
    handshake_timeout: float = 10.0
    """Seconds an accepted connection may take to finish TLS and ``Hello``."""
    max_handshakes: int = 32
    """Accepted connections that may be in their handshake at once; beyond that, the oldest
    is closed to make room."""
    max_frame_bytes: int = 1 << 30
    plaintext: bool = False
    mac_rounds: str = "after-dispute"
    """When rounds carry MACs that can name a cheating server: "after-dispute" (the re-run of a
    disputed round and a window of rounds after it, doubling with each dispute, until a server
    is excluded; ``protocol.dispute.MacPolicy``) or "always"."""
    mac_window: int = 10
    """MAC rounds after the first dispute (doubling with each further one)."""
    norm_bound: float = 0.0
    """An L2 bound on each owner's contribution, in model units, checked by the servers inside
    the secure computation (``protocol.normcheck``); 0: off."""

    @property
    def encoded_norm_bound(self) -> int:
        """``norm_bound`` in encoded units (0: off)."""
        return math.floor(self.norm_bound * (1 << self.frac_bits) + 0.5)


DATASETS = ("breast_cancer", "digits", "wine", "iris", "mnist", "csv", "synthetic")
AGGREGATIONS = ("secure", "plain")
WEIGHTINGS = ("owners", "examples")
MODELS = ("logreg", "mlp")
MAC_ROUNDS = ("after-dispute", "always")
PRIVACY_UNITS = ("example", "owner")
PRIVACY_MECHANISMS = ("sampled", "tree")
OPTIMIZERS = ("sgd", "adam")
SPLITS = ("iid", "dirichlet")


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    dataset: str = "breast_cancer"
    """A data set that ships with scikit-learn, "mnist" (from ``dataset_path``), "csv" (each
    data owner names its file), or a plug-in "module:function" (see
    ``asyncmpc.learning.data.load_plugin_data``)."""
    dataset_path: str = ""
    """With dataset = "mnist": this host's folder of MNIST's IDX files, or its mnist.npz
    (relative to the hosts.toml; ``asyncmpc.learning.mnist``). Each host's own: not shared."""
    classes: tuple[str, ...] = ()
    """With dataset = "csv": every class label, as text (the label column is read as text)."""
    rounds: int = 100
    optimizer: str = "adam"
    learning_rate: float = 0.1
    momentum: float = 0.9
    l2: float = 1e-3
    batch_size: int = 0
    """Examples per data owner per round; 0 means the owner's whole local data (full batch)."""
    clip_norm: float = 100.0
    """Each owner's gradient is scaled down to at most this L2 norm before it is encoded."""
    split: str = "iid"
    dirichlet_alpha: float = 0.5
    seed: int = 0
    test_fraction: float = 0.25
    parameters: int = 1000
    """With dataset = "synthetic": length of the random gradient each owner sends every round."""
    aggregation: str = "secure"
    """"plain" sends gradients to the model owner in the clear: the floor for benchmarks, and
    allowed only with dataset = "synthetic"."""
    model: str = "logreg"
    """"logreg", "mlp", or a plug-in "module:attribute" (see ``asyncmpc.learning.models``)."""
    model_options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """The ``[training.model_options]`` table, passed to the model's builder."""
    local_steps: int = 1
    """Optimizer steps each data owner takes on its own data per round (FedAvg); 1: a gradient."""
    local_learning_rate: float = 0.1
    """The step size of those local steps (plain SGD)."""
    weighting: str = ""
    """"owners" (each contributor counts once) or "examples" (each owner by its number of
    examples, kept secret: only sums are opened); "" means "examples" when local_steps > 1."""

    @property
    def weighted(self) -> bool:
        return self.weighting == "examples" or (not self.weighting and self.local_steps > 1)


DEFAULT_LEDGER_DIR = "privacy-ledger"


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    """The ``[privacy]`` table: differential privacy inside the secure sum (``asyncmpc.learning.privacy``)."""

    unit: str = "example"
    """What is protected: "example" (any one training example of any owner) or "owner" (a data
    owner's whole contribution)."""
    epsilon: float = 0.0
    """The budget for the whole training (0: none; then ``noise_multiplier`` is required)."""
    delta: float = 1e-5
    noise_multiplier: float = 0.0
    """Noise standard deviation over the clipping bound; 0: the smallest that keeps
    ``[training] rounds`` rounds within (epsilon, delta)."""
    clip: float = 1.0
    """The L2 bound of one example's gradient (unit "example") or one owner's update ("owner")."""
    sampling_rate: float = 0.0
    """The probability that a unit takes part in a round; 0: 0.1 for examples, 1 for owners."""
    examples: int = 0
    """The public total number of training examples (unit "example"); the model owner divides
    the noisy sum by sampling_rate * examples. 0: the bundled data set's training split."""
    ledger_dir: str = DEFAULT_LEDGER_DIR
    """Where a data owner keeps its own ledger of its data's releases, one file per data set,
    across runs (relative to the hosts.toml; ``learning.privacy.budget``)."""
    mechanism: str = "sampled"
    """"sampled": every round a Poisson sample (amplification by sampling, which trusts each
    owner's coin); "tree": DP-FTRL, no sampling: each example in one round of every
    ``epoch_steps``, the noise of a binary tree over them (``learning.privacy.tree``)."""
    epoch_steps: int = 10
    """With mechanism "tree": the rounds of one tree (an epoch: every example once)."""

    @property
    def rate(self) -> float:
        """The share of the units in a round: the sampling rate, or 1 / epoch_steps for a tree."""
        if self.mechanism == "tree":
            return 1.0 / self.epoch_steps
        if self.sampling_rate:
            return self.sampling_rate
        return 0.1 if self.unit == "example" else 1.0


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    session: str
    protocol: ProtocolSettings
    players: dict[str, Player] = field(hash=False)
    training: TrainingSettings = TrainingSettings()
    privacy: PrivacySettings | None = None
    """None: no ``[privacy]`` table, no differential privacy."""
    tls_dir: str | None = None
    """Folder with ca.pem and each player's NAME.pem and NAME.key ([tls] dir)."""

    def player(self, name: str) -> Player:
        """The player called ``name``; ConfigError if the file has none."""
        try:
            return self.players[name]
        except KeyError:
            known = ", ".join(self.players)
            raise ConfigError(f"{self.path}: no player named {name!r} (players: {known})") from None

    @property
    def servers(self) -> tuple[Player, Player, Player]:
        s = sorted((p for p in self.players.values() if p.role == Role.COMPUTE_SERVER), key=lambda p: p.index or 0)
        return (s[0], s[1], s[2])

    @property
    def data_owners(self) -> tuple[Player, ...]:
        return tuple(p for p in self.players.values() if p.role == Role.DATA_OWNER)

    @property
    def model_owner(self) -> Player:
        return next(p for p in self.players.values() if p.role == Role.MODEL_OWNER)

    @property
    def input_terms(self) -> int:
        """How many encoded inputs the ring must hold summed: ``max_owners``, twice that under
        ``[privacy]`` (the owners' sum keeps to half the ring; the noise has the other half)."""
        return self.protocol.max_owners * (1 if self.privacy is None else 2)

    def server_index(self, name: str) -> int:
        p = self.player(name)
        if p.role != Role.COMPUTE_SERVER or p.index is None:
            raise ConfigError(f"{self.path}: player {name!r} is not a compute server")
        return p.index


PLAYER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""What a player's name may be: it names its certificate (a DNS name) and its files."""


def is_loopback_address(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
