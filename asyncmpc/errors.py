"""Every exception class asyncmpc defines (imports nothing of the package)."""

from __future__ import annotations

__all__ = [
    "AsyncMpcError",
    "ConfigError",
    "DisputeError",
    "EncodingError",
    "ProtocolError",
    "RemoteProtocolError",
    "DecodeError",
    "FrameTooLarge",
    "PeerLost",
    "TlsRefused",
    "OutputError",
    "ListenError",
    "PluginError",
]


class AsyncMpcError(Exception):
    """Base of every error asyncmpc raises on purpose."""


class ConfigError(AsyncMpcError):
    """hosts.toml (or another setting) is missing, malformed or inconsistent."""


class EncodingError(AsyncMpcError, ValueError):
    """A real value cannot be encoded in the ring (NaN, inf, or out of range)."""


class ProtocolError(AsyncMpcError):
    """Something broke the protocol's rules."""


class RemoteProtocolError(ProtocolError):
    """A peer sent something the protocol does not allow.

    ``peer`` names the player that sent it, when known.
    """

    def __init__(self, message: str, *, peer: str | None = None) -> None:
        self.peer = peer
        super().__init__(f"{peer}: {message}" if peer else message)

    def with_peer(self, peer: str) -> RemoteProtocolError:
        """Return a copy of this error that names ``peer``."""
        if self.peer is not None:
            return self
        err = type(self)(str(self), peer=peer)
        err.__cause__ = self.__cause__
        return err


class DecodeError(RemoteProtocolError):
    """Bytes from a peer are not a valid frame or message."""


class FrameTooLarge(DecodeError):
    """A frame announced a length above the configured maximum."""


class PeerLost(AsyncMpcError):
    """A connection closed or could not be made in time."""


class SettingsMismatch(RemoteProtocolError):
    """A peer's shared settings differ from this player's (``config.shared``): it will not
    change by dialling again."""


class TlsRefused(PeerLost):
    """A peer closed a TLS connection before answering the Hello: with TLS 1.3 that is how a
    client learns that the server did not accept its certificate."""


class OutputError(AsyncMpcError):
    """A file this player writes (checkpoint, model, metrics) cannot be written."""


class ListenError(AsyncMpcError):
    """A player cannot listen on its configured address (port in use, address not local)."""


class PluginError(AsyncMpcError):
    """A model or data plug-in cannot be imported, or raised, or returned the wrong thing.

    ``public`` is what may leave the player (a data owner's ``Decline`` reason): without the
    text of an exception the plug-in raised, which could quote the data."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = message if public is None else public


class DisputeError(AsyncMpcError):
    """The servers' results disagree and the disagreement cannot be settled: under [privacy]
    no MAC round may open the noise-free sum to find out which server lied."""


class BudgetSpent(AsyncMpcError):
    """A compute server refused a release because its own [privacy] budget is spent: training
    stops there, saying so (no one is blamed: the server keeps the rule it was given)."""


class Refused(AsyncMpcError):
    """A compute server refuses what this deployment asks of it, every round (its settings
    differ from the model owner's): training cannot go on."""
