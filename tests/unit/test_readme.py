"""The README's hosts.toml reference lists exactly the keys the config code accepts."""

from __future__ import annotations

import re

from asyncmpc.config import parse
from tests.helpers import ROOT


def documented() -> dict[str, set[str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## hosts.toml\n", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, set[str]] = {}
    current = ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not line.startswith("|") or cells[0] in ("table", "---"):
            continue
        current = cells[0].strip("`") or current
        tables.setdefault(current, set()).update(re.findall(r"`([a-z0-9_]+)`", cells[1]))
    return tables


def test_the_readme_documents_every_key_of_hosts_toml_and_no_other() -> None:
    assert documented() == {
        "top level": {"session"},
        "[tls]": {"dir"},
        "[protocol]": set(parse.PROTOCOL_KEYS),
        "[training]": set(parse.TRAINING_KEYS),
        "[privacy]": set(parse.PRIVACY_KEYS),
        "[players.NAME]": set(parse.PLAYER_KEYS),
    }


def test_the_readme_hardened_protocol_table_is_a_valid_protocol_table() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### A hardened deployment\n", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```toml\n", 1)[1].split("```", 1)[0]
    hosts = (ROOT / "hosts.toml").read_text()
    head, rest = hosts.split("[protocol]\n", 1)
    tail = rest[rest.index("\n[") :]
    config = parse.parse_config(head + snippet + tail, "README.md")
    assert config.protocol.norm_bound == 4.0 and config.protocol.min_owners == 3
    assert not config.protocol.plaintext
