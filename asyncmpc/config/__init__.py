"""hosts.toml: a deployment as frozen dataclasses (``settings``), read and validated once
(``parse``)."""

from asyncmpc.config.parse import load_config, parse_config
from asyncmpc.config.settings import (
    LISTENING_ROLES,
    Config,
    Player,
    PrivacySettings,
    ProtocolSettings,
    Role,
    TrainingSettings,
)

__all__ = [
    "LISTENING_ROLES",
    "Config",
    "Player",
    "PrivacySettings",
    "ProtocolSettings",
    "Role",
    "TrainingSettings",
    "load_config",
    "parse_config",
]
