"""hosts.toml validation: every error names the file, the table and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncmpc.config import load_config, parse_config
from asyncmpc.errors import ConfigError
from tests.helpers import ROOT, hosts_toml

GOOD = hosts_toml(3, ports=[9000, 9001, 9002, 9003])


def test_the_shipped_hosts_toml_loads() -> None:
    cfg = load_config(ROOT / "hosts.toml")
    assert [p.name for p in cfg.servers] == ["server-0", "server-1", "server-2"]
    assert [p.index for p in cfg.servers] == [0, 1, 2]
    assert len(cfg.data_owners) >= 2
    assert cfg.model_owner.port is not None


def test_a_good_file_parses() -> None:
    cfg = parse_config(GOOD, "good.toml")
    assert cfg.session == "test" and cfg.protocol.plaintext
    assert cfg.player("data-owner-2").port is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace('role = "compute-server"', 'role = "server"', 1),
            r"\[players.server-0\] role: unknown role 'server'",
        ),
        (
            lambda t: t.replace("port = 9002", "port = 9001"),
            r"\[players.server-1\] port: 127.0.0.1:9001 is the address of \[players.server-0\] \(127.0.0.1:9001\)",
        ),
        (  # a name and an address of the same host are one endpoint
            lambda t: t.replace('host = "127.0.0.1"\nport = 9002', 'host = "localhost"\nport = 9001'),
            r"\[players.server-1\] port: localhost:9001 is the address of \[players.server-0\] \(127.0.0.1:9001\)",
        ),
        (
            lambda t: t.replace('host = "127.0.0.1"\nport = 9002', 'host = "0.0.0.0"\nport = 9002'),
            r"\[players.server-1\] host: 0.0.0.0 is every address of a host and cannot be dialled; put the address "
            r"others dial in host, and 0.0.0.0 in bind",
        ),
        (
            lambda t: t.replace('host = "127.0.0.1"\nport = 9002', 'host = "127.0.0.1"\nbind = "0.0.0.0"\nport = 9002'),
            r"plaintext: allowed only when every player is on loopback, but \[players.server-1\] bind is '0.0.0.0'",
        ),
        (
            lambda t: t + '\n[players.data-owner-9]\nrole = "data-owner"\nbind = "0.0.0.0"\n',
            r"\[players.data-owner-9\] bind: a data owner does not listen, remove the key",
        ),
        (
            lambda t: t.replace('host = "127.0.0.1"\nport = 9002', "port = 9002"),
            r"\[players.server-1\] host: expected the host name or address others dial, got ''",
        ),
        (lambda t: t.replace("port = 9001", 'port = "x"'), r"\[players.server-0\] port: expected int, got 'x'"),
        (lambda t: t.replace("port = 9001", "port = 70000"), r"\[players.server-0\] port: 70000 is outside 1..65535"),
        (
            lambda t: t.replace(
                '[players.server-2]\nrole = "compute-server"', '[players.server-2]\nrole = "data-owner"'
            ).replace("port = 9003", ""),
            r"needs exactly 3 compute-server players, found 2",
        ),
        (lambda t: t.split("[players.data-owner-1]")[0], r"needs at least 2 data-owner players, found 1"),
        (
            lambda t: t.replace("plaintext = true", "plaintext = true\nfrac_bits = 99"),
            r"\[protocol\] frac_bits: 99 is outside",
        ),
        (
            lambda t: t.replace("plaintext = true", "plaintext = true\nfrac_bit = 3"),
            r"\[protocol\]: unknown key 'frac_bit'",
        ),
        (lambda t: t.replace("plaintext = true", "plaintext = 1"), r"\[protocol\] plaintext: expected bool"),
        (
            lambda t: t.replace('host = "127.0.0.1"\nport = 9002', 'host = "10.1.2.3"\nport = 9002'),
            r"plaintext: allowed only when every player is on loopback.*server-1",
        ),
        (
            lambda t: t + '\n[players.data-owner-9]\nrole = "data-owner"\nhost = "127.0.0.1"\nport = 5\n',
            r"\[players.data-owner-9\] port: a data owner does not listen",
        ),
        (
            lambda t: t.replace("[players.data-owner-1]", '[players."../data-owner-1"]'),
            r"\[players\.\.\./data-owner-1\]: a player's name is letters, digits",
        ),
        (lambda t: t.replace("[protocol]", "[protocol"), r"not valid TOML"),
        (lambda t: t.replace("[players.server-2]", "[unused]"), r"top level: unknown key 'unused'"),
    ],
)
def test_errors_name_file_table_and_key(edit, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=r"^broken\.toml: .*" + message):
        parse_config(edit(GOOD), "broken.toml")


def test_missing_file_and_unknown_player(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load_config(tmp_path / "nope.toml")
    cfg = parse_config(GOOD, "good.toml")
    with pytest.raises(ConfigError, match="no player named 'server-7'"):
        cfg.player("server-7")


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ('optimizer = "rmsprop"', r"\[training\] optimizer: 'rmsprop' is not one of sgd, adam"),
        ("rounds = 0", r"\[training\] rounds: 0 is outside"),
        ('learning_rate = "fast"', r"\[training\] learning_rate: expected float"),
        ('dataset = "csv"', r"\[players.data-owner-0\] csv: missing"),
        ("lr = 1", r"\[training\]: unknown key 'lr'"),
    ],
)
def test_training_errors_name_the_key(training: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^t\.toml: " + message):
        parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=training), "t.toml")


def test_csv_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    extra = {f"data-owner-{i}": 'csv = "d.csv"' for i in range(3)}
    text = hosts_toml(3, training='dataset = "csv"\nclasses = ["a", "b"]', extra=extra)
    (tmp_path / "hosts.toml").write_text(text)
    cfg = load_config(tmp_path / "hosts.toml")
    assert cfg.player("data-owner-1").csv == str(tmp_path.resolve() / "d.csv")
    assert cfg.training.classes == ("a", "b")


def test_the_shared_settings_name_the_first_key_that_differs_and_ignore_each_hosts_own() -> None:
    from asyncmpc.config.shared import first_difference, shared_settings

    text = hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"')
    base = parse_config(text + '\n[privacy]\nepsilon = 3.0\nledger_dir = "a"\n', "a/hosts.toml")
    mine = shared_settings(base)
    own = parse_config(text + '\n[privacy]\nepsilon = 3.0\nledger_dir = "elsewhere"\n', "b/hosts.toml")
    assert first_difference(mine, shared_settings(own), "x", "y") is None  # where a ledger lives is each host's
    seed = parse_config(
        text.replace('dataset = "breast_cancer"', 'dataset = "breast_cancer"\nseed = 7')
        + "\n[privacy]\nepsilon = 3.0\n"
    )
    assert first_difference(mine, shared_settings(seed), "model-owner", "data-owner-1") == (
        "[training] seed differs: 0 at model-owner, 7 at data-owner-1"
    )
    alone = parse_config(text)
    assert first_difference(mine, shared_settings(alone), "a", "b").startswith("[privacy] differs: {")  # type: ignore[union-attr]
    assert first_difference(mine, "not json", "a", "b") == "b sent settings that are not readable"
