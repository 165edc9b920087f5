"""What the protocol machines know of a deployment (pure): ``Params``, built once from its
hosts.toml (``Params.of``), so a machine depends on a few names and limits, not on the whole
``Config``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from asyncmpc.config import Config, Role
from asyncmpc.errors import RemoteProtocolError

__all__ = ["Params"]


@dataclass(frozen=True, slots=True)
class Params:
    session: str
    servers: tuple[str, ...]
    """The compute servers, in index order."""
    model_owner: str
    roles: Mapping[str, Role] = field(hash=False)
    """Every player's role, by name."""
    min_owners: int
    max_owners: int
    input_terms: int
    """How many encoded inputs the ring must hold summed (``Config.input_terms``)."""
    frac_bits: int
    round_timeout: float
    server_timeout: float
    private: bool
    """Whether the deployment has a ``[privacy]`` table."""
    norm_bound: int = 0
    """``[protocol] norm_bound`` in encoded units (0: no norm check; otherwise inputs are shared
    in F_q with a norm proof, ``protocol.normcheck``)."""

    @classmethod
    def of(cls, config: Config) -> Params:
        p = config.protocol
        return cls(
            session=config.session,
            servers=tuple(s.name for s in config.servers),
            model_owner=config.model_owner.name,
            roles={name: player.role for name, player in config.players.items()},
            min_owners=p.min_owners,
            max_owners=p.max_owners,
            input_terms=config.input_terms,
            frac_bits=p.frac_bits,
            round_timeout=p.round_timeout,
            server_timeout=p.server_timeout,
            private=config.privacy is not None,
            norm_bound=p.encoded_norm_bound,
        )

    def role(self, player: str) -> Role:
        """``player``'s role; RemoteProtocolError for a name not in the deployment."""
        try:
            return self.roles[player]
        except KeyError:
            raise RemoteProtocolError(f"{player!r} is not a player of this deployment") from None

    def index(self, player: str) -> int | None:
        """The index of compute server ``player`` (None: not a compute server)."""
        return self.servers.index(player) if player in self.servers else None

    def server_index(self, player: str) -> int:
        """The index of compute server ``player``; RemoteProtocolError if it is none."""
        index = self.index(player)
        if index is None:
            raise RemoteProtocolError(f"{player!r} is not a compute server", peer=player)
        return index
