"""The settings every player of a deployment must share, and how two players' differ (pure).

Each player reads its own hosts.toml. Settings that change what a share means or what a
round computes (the fixed point, the data set and its split, the model, ``[privacy]``, the
player table) must be the same everywhere: a data owner with another ``frac_bits`` would be
weighted wrongly, one with another ``seed`` would train on the model owner's test rows, one with
``[privacy]`` alone would answer nothing. So every player sends its settings in its ``Hello``
(``shared_settings``), and each side refuses a peer whose settings differ, naming the first table
and key that differ (``first_difference``). Left out: what is each host's own (a data owner's
CSV file and label column, where its MNIST files and its privacy ledger are, where the TLS files
are) and the addresses, which each host may see differently (through NAT, a proxy, or a name of
its own).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from asyncmpc.config.settings import Config

__all__ = ["first_difference", "shared_settings"]

_OWN = {"privacy": {"ledger_dir"}, "training": {"dataset_path"}}
"""Keys each host sets for itself, by table."""


def shared_settings(config: Config) -> str:
    """``config``'s shared settings as canonical JSON (sorted keys, no spaces)."""
    doc: dict[str, Any] = {
        "session": config.session,
        "protocol": dataclasses.asdict(config.protocol),
        "training": _without(dataclasses.asdict(config.training), "training"),
        "privacy": None if config.privacy is None else _without(dataclasses.asdict(config.privacy), "privacy"),
        "players": {name: {"role": str(p.role), "index": p.index} for name, p in sorted(config.players.items())},
        "tls": config.tls_dir is not None,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)


def first_difference(mine: str, theirs: str, me: str, peer: str) -> str | None:
    """The first setting in which ``theirs`` (player ``peer``'s) differs from ``mine`` (player
    ``me``'s), as one line naming its table and key and both players' values; None when they
    agree."""
    if mine == theirs:
        return None
    try:
        a, b = json.loads(mine), json.loads(theirs)
    except ValueError:
        return f"{peer} sent settings that are not readable"
    if not isinstance(b, dict):
        return f"{peer} sent settings that are not readable"
    for table in sorted(set(a) | set(b)):
        x, y = a.get(table), b.get(table)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if x.get(key) != y.get(key):
                    where = f"[{table}] {key}" if table != "players" else f"[players.{key}]"
                    return f"{where} differs: {_shown(x.get(key))} at {me}, {_shown(y.get(key))} at {peer}"
        return f"{_table(table)} differs: {_shown(x)} at {me}, {_shown(y)} at {peer}"
    return f"the settings differ from {peer}'s"


def _without(table: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in table.items() if k not in _OWN.get(name, set())}


def _table(name: str) -> str:
    return {"session": "top level session", "tls": "[tls] (present or not)"}.get(name, f"[{name}]")


def _shown(value: Any) -> str:
    return "absent" if value is None else json.dumps(value, sort_keys=True)
