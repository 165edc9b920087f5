"""hosts.toml -> ``Config``, validated once (uses tomllib).

A deployment file has a ``[protocol]`` table of settings and one ``[players.NAME]`` table per
player with ``role``, ``host`` and (for listening roles) ``port``. Compute servers get their index
0, 1, 2 from the order in which they appear in the file. Every error names the file, the table
and the key.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import socket
import tomllib
from pathlib import Path
from typing import Any

from asyncmpc.config.settings import (
    AGGREGATIONS,
    DATASETS,
    DEFAULT_LEDGER_DIR,
    LISTENING_ROLES,
    MAC_ROUNDS,
    MODELS,
    OPTIMIZERS,
    PLAYER_NAME,
    PRIVACY_MECHANISMS,
    PRIVACY_UNITS,
    SPLITS,
    WEIGHTINGS,
    Config,
    Player,
    PrivacySettings,
    ProtocolSettings,
    Role,
    TrainingSettings,
    is_loopback_address,
)
from asyncmpc.errors import ConfigError

__all__ = ["PLAYER_KEYS", "PRIVACY_KEYS", "PROTOCOL_KEYS", "TRAINING_KEYS", "load_config", "parse_config"]

PROTOCOL_KEYS: dict[str, tuple[type, Any]] = {
    "frac_bits": (int, (1, 40)),
    "min_owners": (int, (2, 1_000_000)),
    "max_owners": (int, (2, 1_000_000)),
    "connect_timeout": (float, (0.001, 86_400.0)),
    "round_timeout": (float, (0.001, 86_400.0)),
    "server_timeout": (float, (0.001, 86_400.0)),
    "idle_timeout": (float, (0.001, 10_000_000.0)),
    "handshake_timeout": (float, (0.001, 86_400.0)),
    "max_handshakes": (int, (1, 1_000_000)),
    "max_frame_bytes": (int, (1024, 1 << 40)),
    "plaintext": (bool, None),
    "mac_rounds": (str, MAC_ROUNDS),
    "mac_window": (int, (0, 1_000_000)),
    "norm_bound": (float, (0.0, 1e12)),
}
TRAINING_KEYS: dict[str, tuple[type, Any]] = {
    "dataset": (str, None),
    "dataset_path": (str, None),
    "classes": (list, None),
    "rounds": (int, (1, 1_000_000)),
    "optimizer": (str, OPTIMIZERS),
    "learning_rate": (float, (0.0, 1e6)),
    "momentum": (float, (0.0, 1.0)),
    "l2": (float, (0.0, 1e6)),
    "batch_size": (int, (0, 1 << 40)),
    "clip_norm": (float, (1e-12, 1e12)),
    "split": (str, SPLITS),
    "dirichlet_alpha": (float, (1e-6, 1e6)),
    "seed": (int, (0, (1 << 63) - 1)),
    "test_fraction": (float, (0.01, 0.99)),
    "parameters": (int, (1, 1 << 31)),
    "aggregation": (str, AGGREGATIONS),
    "model": (str, None),
    "model_options": (dict, None),
    "local_steps": (int, (1, 100_000)),
    "local_learning_rate": (float, (0.0, 1e6)),
    "weighting": (str, WEIGHTINGS),
}
PRIVACY_KEYS: dict[str, tuple[type, Any]] = {
    "unit": (str, PRIVACY_UNITS),
    "epsilon": (float, (0.0, 1e6)),
    "delta": (float, (1e-300, 0.5)),
    "noise_multiplier": (float, (0.0, 1e6)),
    "clip": (float, (1e-9, 1e9)),
    "sampling_rate": (float, (0.0, 1.0)),
    "examples": (int, (0, 1 << 50)),
    "ledger_dir": (str, None),
    "mechanism": (str, PRIVACY_MECHANISMS),
    "epoch_steps": (int, (1, 1 << 20)),
}
PLAYER_KEYS = {"role", "host", "bind", "port", "csv", "label_column"}


def load_config(path: str | Path) -> Config:
    """Read and validate a hosts.toml file. Raises ConfigError naming the file, table and key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text: {exc}") from exc
    return parse_config(text, str(p))


def parse_config(text: str, path: str = "hosts.toml") -> Config:
    """Validate the text of a hosts.toml; ``path`` is used in error messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    _no_unknown(doc, {"session", "protocol", "training", "privacy", "tls", "players"}, path, "top level")
    session = doc.get("session", "asyncmpc")
    if not isinstance(session, str) or not session:
        raise ConfigError(f"{path}: top level: key 'session' must be a non-empty string, got {session!r}")
    protocol = _parse_protocol(doc.get("protocol", {}), path)
    players = _parse_players(doc.get("players"), path)
    training = _parse_training(doc.get("training", {}), path)
    _check_mnist(doc.get("training", {}), training, path)
    if training.aggregation == "plain" and training.dataset != "synthetic":
        raise ConfigError(
            f'{path}: [training] aggregation: "plain" reveals every gradient and is allowed only '
            'with dataset = "synthetic" (benchmarks)'
        )
    if training.dataset == "csv":
        for p in players.values():
            if p.role == Role.DATA_OWNER and p.csv is None:
                raise ConfigError(f'{path}: [players.{p.name}] csv: missing (the dataset is "csv")')
        if len(training.classes) < 2:
            raise ConfigError(f'{path}: [training] classes: list at least 2 class labels when dataset = "csv"')
    owners = sum(p.role == Role.DATA_OWNER for p in players.values())
    if owners > protocol.max_owners:
        raise ConfigError(
            f"{path}: [protocol] max_owners: {protocol.max_owners}, but [players] lists {owners} data owners "
            "(the encoding keeps room for max_owners inputs in the sum)"
        )
    tls_dir = _parse_tls(doc.get("tls", {}), path)
    if not protocol.plaintext and tls_dir is None:
        raise ConfigError(
            f"{path}: [tls] dir: missing; every connection uses TLS unless [protocol] plaintext = true "
            "(allowed on loopback only)"
        )
    privacy = None if "privacy" not in doc else _parse_privacy(doc["privacy"], training, path)
    cfg = Config(
        path=path,
        session=session,
        protocol=protocol,
        players=players,
        training=training,
        privacy=privacy,
        tls_dir=tls_dir,
    )
    if protocol.plaintext and not all(p.is_loopback for p in players.values()):
        bad = next(p for p in players.values() if not p.is_loopback)
        key = "bind" if bad.bind and not is_loopback_address(bad.bind) else "host"
        raise ConfigError(
            f"{path}: [protocol] plaintext: allowed only when every player is on loopback, "
            f"but [players.{bad.name}] {key} is {getattr(bad, key)!r}"
        )
    return cfg


def _table(table: Any, keys: dict[str, tuple[type, Any]], path: str, where: str) -> dict[str, Any]:
    """The checked values of one settings table: known keys only, each of its declared type."""
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    _no_unknown(table, set(keys), path, where)
    return {
        key: _typed(table[key], kind, allowed, path, where, key)
        for key, (kind, allowed) in keys.items()
        if key in table
    }


def _parse_protocol(table: Any, path: str) -> ProtocolSettings:
    where = "[protocol]"
    settings = ProtocolSettings(**_table(table, PROTOCOL_KEYS, path, where))
    _check_norm_bound(settings, path)
    if settings.min_owners > settings.max_owners:
        raise ConfigError(
            f"{path}: {where} min_owners: {settings.min_owners} is above max_owners {settings.max_owners}"
        )
    return settings


LARGEST_NORM_BOUND = math.isqrt((1 << 64) - (1 << 32) + 1) // 61 - 1
"""The largest ``norm_bound`` in encoded units (``crypto.normproof.NormSpec.largest_bound``)."""


def _check_norm_bound(settings: ProtocolSettings, path: str) -> None:
    if not settings.norm_bound:
        return
    bound = settings.encoded_norm_bound
    largest = LARGEST_NORM_BOUND / 2**settings.frac_bits
    if bound < 1 or bound > LARGEST_NORM_BOUND:
        raise ConfigError(
            f"{path}: [protocol] norm_bound: {settings.norm_bound} is outside what the check can serve at "
            f"frac_bits = {settings.frac_bits}: above 0 and at most {largest:.6g} (model units)"
        )


def _parse_tls(table: Any, path: str) -> str | None:
    folder = _table(table, {"dir": (str, None)}, path, "[tls]").get("dir")
    if folder is not None and not Path(folder).is_absolute():
        folder = str(Path(path).resolve().parent / folder)
    return folder


def _parse_training(table: Any, path: str) -> TrainingSettings:
    values = _table(table, TRAINING_KEYS, path, "[training]")
    if "dataset_path" in values and not Path(values["dataset_path"]).is_absolute():
        values["dataset_path"] = str(Path(path).resolve().parent / values["dataset_path"])
    settings = TrainingSettings(**values)
    for key, names, what in (("dataset", DATASETS, "function"), ("model", MODELS, "builder")):
        value = getattr(settings, key)
        if value not in names and not _is_import_string(value):
            raise ConfigError(
                f"{path}: [training] {key}: {value!r} is not one of {', '.join(names)}, nor a plug-in 'module:{what}'"
            )
    if settings.dataset not in DATASETS and len(settings.classes) < 2:
        raise ConfigError(f"{path}: [training] classes: list at least 2 class labels for a data plug-in")
    return settings


def _check_mnist(table: dict[str, Any], settings: TrainingSettings, path: str) -> None:
    """``dataset_path`` is given exactly when dataset = "mnist", which keeps MNIST's own test set."""
    where = f"{path}: [training]"
    if settings.dataset != "mnist":
        if settings.dataset_path:
            raise ConfigError(f'{where} dataset_path: only with dataset = "mnist", not {settings.dataset!r}')
        return
    if not settings.dataset_path:
        raise ConfigError(
            f'{where} dataset_path: missing: the folder of MNIST\'s IDX files, or mnist.npz (dataset = "mnist")'
        )
    if "test_fraction" in table:
        raise ConfigError(
            f"{where} test_fraction: MNIST keeps its own test set (the t10k files, x_test in mnist.npz); remove the key"
        )


def _parse_privacy(table: Any, training: TrainingSettings, path: str) -> PrivacySettings:
    """The ``[privacy]`` table, checked against the training it protects."""
    values = _table(table, PRIVACY_KEYS, path, "[privacy]")
    folder = Path(values.get("ledger_dir", DEFAULT_LEDGER_DIR))
    values["ledger_dir"] = str(folder if folder.is_absolute() else Path(path).resolve().parent / folder)
    settings = PrivacySettings(**values)

    def refuse(key: str, why: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {why}")

    if not settings.epsilon and not settings.noise_multiplier:
        raise refuse("[privacy]", "give epsilon (a budget for the whole training) or noise_multiplier")
    if settings.sampling_rate == 0.0 and "sampling_rate" in table:
        raise refuse("[privacy] sampling_rate", "must be above 0")
    if training.aggregation == "plain":
        raise refuse("[privacy]", 'needs secure aggregation, not aggregation = "plain"')
    if training.dataset == "synthetic" and settings.unit != "owner":
        raise refuse("[privacy] unit", 'synthetic benchmarks take unit = "owner" (they have no examples)')
    if training.weighting == "examples":
        raise refuse(
            "[training] weighting",
            '"examples" opens the number of examples, which [privacy] keeps secret (the model owner '
            "divides by the expected number instead)",
        )
    if settings.mechanism == "tree":
        if settings.unit != "example":
            raise refuse("[privacy] unit", 'mechanism = "tree" protects examples: every owner answers every round')
        if "sampling_rate" in table:
            raise refuse(
                "[privacy] sampling_rate",
                'mechanism = "tree" samples nothing: each example is in one round of every epoch_steps',
            )
    if settings.unit == "example":
        if training.local_steps > 1:
            raise refuse("[training] local_steps", 'with [privacy] unit = "example" each round is one clipped gradient')
        if training.batch_size:
            raise refuse("[training] batch_size", 'with [privacy] unit = "example" rounds sample by sampling_rate')
        bundled = training.dataset in DATASETS and training.dataset != "csv"
        if not bundled and not settings.examples:
            raise refuse("[privacy] examples", "give the public total number of training examples")
    return settings


def _is_import_string(value: str) -> bool:
    module, sep, attribute = value.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and attribute.isidentifier()


def _parse_players(table: Any, path: str) -> dict[str, Player]:
    if table is None:
        raise ConfigError(f"{path}: missing table [players]")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [players] must be a table of [players.NAME] tables")
    players: dict[str, Player] = {}
    endpoints: dict[str, tuple[frozenset[str], int, str]] = {}
    """A listening player's addresses (its host name resolved), port and host."""
    counts = {role: 0 for role in Role}
    for name, entry in table.items():
        where = f"[players.{name}]"
        if not PLAYER_NAME.fullmatch(name) or name == "ca":
            raise ConfigError(
                f"{path}: {where}: a player's name is letters, digits, '.', '_' and '-' (up to 64, not 'ca'): "
                "it names the player's certificate and files"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        _no_unknown(entry, PLAYER_KEYS, path, where)
        role = entry.get("role")
        if role not in [r.value for r in Role]:
            raise ConfigError(f"{path}: {where} role: unknown role {role!r} (expected one of {', '.join(Role)})")
        role = Role(role)
        host, bind, port = _address(entry, role, path, where)
        if port is not None:
            other = next((n for n, e in endpoints.items() if e[1] == port and e[0] & _resolved(host)), None)
            if other is not None:
                raise ConfigError(
                    f"{path}: {where} port: {host}:{port} is the address of [players.{other}] "
                    f"({endpoints[other][2]}:{port})"
                )
            endpoints[name] = (_resolved(host), port, host)
        csv = entry.get("csv")
        if csv is not None and (not isinstance(csv, str) or not csv or role == Role.COMPUTE_SERVER):
            raise ConfigError(f"{path}: {where} csv: expected the path of a CSV file (data and model owners only)")
        label_column = entry.get("label_column", "label")
        if not isinstance(label_column, str) or not label_column:
            raise ConfigError(f"{path}: {where} label_column: expected a column name, got {label_column!r}")
        if csv is not None and not Path(csv).is_absolute():
            csv = str(Path(path).resolve().parent / csv)
        index = counts[role] if role != Role.MODEL_OWNER else None
        counts[role] += 1
        players[name] = Player(
            name=name, role=role, host=host, port=port, index=index, csv=csv, label_column=label_column, bind=bind
        )
    if counts[Role.MODEL_OWNER] != 1:
        raise ConfigError(f"{path}: [players] needs exactly 1 model-owner, found {counts[Role.MODEL_OWNER]}")
    if counts[Role.COMPUTE_SERVER] != 3:
        found = [p.name for p in players.values() if p.role == Role.COMPUTE_SERVER]
        raise ConfigError(f"{path}: [players] needs exactly 3 compute-server players, found {len(found)} {found}")
    if counts[Role.DATA_OWNER] < 2:
        raise ConfigError(f"{path}: [players] needs at least 2 data-owner players, found {counts[Role.DATA_OWNER]}")
    return players


def _address(entry: dict[str, Any], role: Role, path: str, where: str) -> tuple[str, str, int | None]:
    """A player's ``host`` (the address others dial: required for a listening player, optional
    for a data owner), ``bind`` (where a listening player listens; default its host) and port."""
    listens = role in LISTENING_ROLES
    host, bind = entry.get("host", ""), entry.get("bind", "")
    if not isinstance(host, str) or (listens and not host):
        raise ConfigError(f"{path}: {where} host: expected the host name or address others dial, got {host!r}")
    if _unspecified(host):
        raise ConfigError(
            f"{path}: {where} host: {host} is every address of a host and cannot be dialled; put the address "
            f"others dial in host, and {host} in bind to listen on every address"
        )
    if not isinstance(bind, str) or (bind and not listens) or (listens and "bind" in entry and not bind):
        what = "a data owner does not listen, remove the key" if not listens else f"expected an address, got {bind!r}"
        raise ConfigError(f"{path}: {where} bind: {what}")
    if not listens:
        if "port" in entry:
            raise ConfigError(f"{path}: {where} port: a data owner does not listen, remove the key")
        return host, "", None
    if "port" not in entry:
        raise ConfigError(f"{path}: {where} port: missing (a {role} listens)")
    return host, "" if bind in ("", host) else bind, _typed(entry["port"], int, (1, 65535), path, where, "port")


def _unspecified(host: str) -> bool:
    """Whether ``host`` means every address of a host (``0.0.0.0``, ``::``): a player may listen
    there (``bind``) but nobody can dial it."""
    try:
        return host == "*" or ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return host.strip("[]") in {"0", "::0"}


@functools.cache
def _resolved(host: str) -> frozenset[str]:
    """The addresses ``host`` names here (itself too), so ``localhost`` and ``127.0.0.1`` are
    seen as one; a name this host cannot resolve stands for itself (it may resolve only where
    the player runs)."""
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset({host})
    return frozenset({host, *(str(info[4][0]) for info in found)})


def _typed(value: Any, kind: type, allowed: Any, path: str, where: str, key: str) -> Any:
    """``value`` checked against its declared kind: bool, int or float within ``allowed``
    bounds, str (one of ``allowed`` if given), or a list of distinct labels."""
    if kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {where} {key}: expected a table, got {value!r}")
        try:  # it travels in checkpoints and model.npz as JSON
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: {where} {key}: only numbers, strings, booleans, lists and tables ({exc})"
            ) from None
        return dict(value)
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise ConfigError(f"{path}: {where} {key}: expected a list of labels, got {value!r}")
        labels = tuple(str(v) for v in value)
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{path}: {where} {key}: labels must be distinct, got {list(labels)}")
        return labels
    if kind is str:
        if allowed is not None and value not in allowed:
            raise ConfigError(f"{path}: {where} {key}: {value!r} is not one of {', '.join(allowed)}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: {where} {key}: expected a non-empty string, got {value!r}")
        return value
    ok: bool
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    if not ok:
        raise ConfigError(f"{path}: {where} {key}: expected {kind.__name__}, got {value!r}")
    if allowed is not None:
        lo, hi = allowed
        if not lo <= value <= hi or value != value:
            raise ConfigError(f"{path}: {where} {key}: {value!r} is outside {lo}..{hi}")
    return value


def _no_unknown(table: dict[str, Any], known: set[str], path: str, where: str) -> None:
    extra = sorted(set(table) - known)
    if extra:
        raise ConfigError(f"{path}: {where}: unknown key {extra[0]!r} (known: {', '.join(sorted(known))})")
