"""The model owner's state on disk: one atomic write, one resume read.

After every round the model owner writes ``checkpoint.npz`` in its output folder: the arrays
training needs (weights, optimizer state, feature scaling) and a JSON header (format, session,
data set, parameter count, the round just finished, the training settings). A restarted model
owner with the same config and output folder reads it and resumes at the next round.

Every file the model owner replaces (checkpoint, model, metrics) goes through ``atomic_write``:
write a temporary file beside the target, flush and fsync it, rename it over the target, and
fsync the folder, so a crash at any moment leaves the old file or the new one, never a torn one.
The round log ``metrics.jsonl`` grows by one line per round instead (``append_round``), so a
long run does not rewrite a growing file; a torn last line is ignored when it is read back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.errors import ConfigError

__all__ = [
    "CHECKPOINT",
    "ROUND_LOG",
    "Checkpoint",
    "append_round",
    "atomic_write",
    "checkpoint_header",
    "fingerprint",
    "load_checkpoint",
    "read_rounds",
    "rewrite_rounds",
    "save_checkpoint",
]

CHECKPOINT = "checkpoint.npz"
ROUND_LOG = "metrics.jsonl"
"""One JSON object per line, one line per round, in the order the rounds ended."""
FORMAT = 1
_HEADER = "__header__"


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with what ``write`` writes to a binary file, atomically and durably."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    with contextlib.suppress(OSError):  # the rename itself is durable once the folder is synced
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def append_round(out_dir: Path, row: dict[str, Any]) -> None:
    """Append one round's row to the round log, durably (flushed and fsynced)."""
    with open(out_dir / ROUND_LOG, "ab") as fh:
        fh.write(json.dumps(row).encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_rounds(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of the round log (none if it does not exist); a torn last line is left out."""
    try:
        lines = (out_dir / ROUND_LOG).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # written while the process died
            raise
    return rows


def rewrite_rounds(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Replace the round log with ``rows`` (at a fresh start, none; at a resume, those kept)."""
    text = b"".join(json.dumps(r).encode() + b"\n" for r in rows)

    def write(fh: IO[bytes]) -> None:
        fh.write(text)

    atomic_write(out_dir / ROUND_LOG, write)


def fingerprint(config: Config) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed: the session, training and privacy
    settings."""
    settings = dataclasses.asdict(config.training)
    settings.pop("rounds")  # a run may be resumed with more rounds
    training = {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()}
    found = {"session": config.session, "frac_bits": config.protocol.frac_bits, "training": training}
    if config.privacy is not None:  # the ledger's releases were made under these settings
        found["privacy"] = dataclasses.asdict(config.privacy)
    return found


@dataclass(frozen=True)
class Checkpoint:
    round: int
    """The last training round finished (the next one is ``round + 1``)."""
    arrays: dict[str, NDArray[Any]]
    meta: dict[str, Any]


def save_checkpoint(
    folder: Path, config: Config, round_no: int, arrays: dict[str, NDArray[Any]], meta: dict[str, Any]
) -> None:
    """Write the model owner's state after training round ``round_no``."""
    header = {"format": FORMAT, "round": round_no, "config": fingerprint(config), "meta": meta}
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)

    def write(fh: IO[bytes]) -> None:
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, _HEADER: raw})  # type: ignore[arg-type]
        fh.write(buf.getbuffer())

    atomic_write(folder / CHECKPOINT, write)


def checkpoint_header(folder: Path) -> dict[str, Any] | None:
    """The JSON header of the checkpoint in ``folder`` (round, settings, meta) without its
    arrays, for watching a run from outside; None if there is none (or it cannot be read)."""
    try:
        with np.load(folder / CHECKPOINT) as f:
            return json.loads(bytes(f[_HEADER]).decode())  # type: ignore[no-any-return]
    except (OSError, ValueError, KeyError):
        return None


def load_checkpoint(folder: Path, config: Config) -> Checkpoint | None:
    """The checkpoint in ``folder``, or None if there is none. Raises ConfigError, naming the
    file and what differs, if it was made with other settings or cannot be read."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files if k != _HEADER}
            header = json.loads(bytes(f[_HEADER]).decode())
    except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the checkpoint ({exc}); use --fresh to start afresh") from exc
    if header.get("format") != FORMAT:
        raise ConfigError(f"{path}: checkpoint format {header.get('format')!r}, expected {FORMAT}; use --fresh")
    want, got = fingerprint(config), header.get("config", {})
    if got != want:
        diff = _first_difference(got, want)
        raise ConfigError(
            f"{path}: the checkpoint was made with other settings ({diff}); use --fresh to start afresh, "
            "or another --out folder"
        )
    return Checkpoint(int(header["round"]), arrays, header.get("meta", {}))


def _first_difference(got: dict[str, Any], want: dict[str, Any], where: str = "") -> str:
    for key in sorted(set(got) | set(want)):
        a, b = got.get(key), want.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f"{where}{key}.")
            if found:
                return found
        elif a != b:
            return f"{where}{key} was {a!r}, the config says {b!r}"
    return ""
