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

The rows live on disk only: ``RoundLog`` is the round log as a sequence that reads its rows
back from the file when asked and keeps only their number in memory, and ``write_metrics``
writes ``metrics.json`` (the summary, every row included) by streaming the rows from the round
log, so the model owner's memory does not grow with the number of rounds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, overload

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.errors import ConfigError

__all__ = [
    "CHECKPOINT",
    "ROUND_LOG",
    "Checkpoint",
    "RoundLog",
    "append_round",
    "atomic_write",
    "checkpoint_header",
    "fingerprint",
    "iter_rounds",
    "load_checkpoint",
    "read_rounds",
    "rewrite_rounds",
    "save_checkpoint",
    "write_metrics",
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


def iter_rounds(out_dir: Path) -> Iterator[dict[str, Any]]:
    """The rows of the round log, one at a time (none if it does not exist); a torn last line
    is left out, damage anywhere else raises ``json.JSONDecodeError``."""
    try:
        fh = open(out_dir / ROUND_LOG, "rb")  # noqa: SIM115 (the with below closes it)
    except FileNotFoundError:
        return
    with fh:
        torn: json.JSONDecodeError | None = None
        for line in fh:
            if torn is not None:
                raise torn  # not the last line: damage, said, not hidden
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                torn = exc  # written while the process died, if nothing follows
                continue
            yield row


def read_rounds(out_dir: Path) -> list[dict[str, Any]]:
    """The rows of the round log as a list (none if it does not exist); a torn last line is
    left out."""
    return list(iter_rounds(out_dir))


def rewrite_rounds(out_dir: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Replace the round log with ``rows`` (at a fresh start, none; at a resume, those kept),
    written as they come (``rows`` may be read from the round log itself); return how many."""
    count = 0

    def write(fh: IO[bytes]) -> None:
        nonlocal count
        for row in rows:
            fh.write(json.dumps(row).encode() + b"\n")
            count += 1

    atomic_write(out_dir / ROUND_LOG, write)
    return count


class RoundLog(Sequence[dict[str, Any]]):
    """A run's round log as a sequence of rows that stay on disk: ``append`` writes a row to
    ``metrics.jsonl`` and only the count is kept; reading a row or iterating reads the file
    again (from its start: fine for a summary at the end, slow for many random reads)."""

    def __init__(self, out_dir: Path, count: int = 0) -> None:
        self.out_dir = out_dir
        self._count = count

    @classmethod
    def restart(cls, out_dir: Path, after: int = 0) -> RoundLog:
        """The round log of a run that starts after training round ``after``: the rows of
        rounds up to ``after`` are kept (a resume), the rest dropped (0: a fresh start, none).
        Raises OSError if the file cannot be written."""
        kept = (r for r in iter_rounds(out_dir) if r.get("round", 0) <= after) if after else iter(())
        return cls(out_dir, rewrite_rounds(out_dir, kept))

    def append(self, row: dict[str, Any]) -> None:
        """Append a finished round's row to the file, durably (``append_round``)."""
        append_round(self.out_dir, row)
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return itertools.islice(iter_rounds(self.out_dir), self._count)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return list(self)[index]
        i = index + self._count if index < 0 else index
        if not 0 <= i < self._count:
            raise IndexError(f"round log index {index} out of range ({self._count} rows)")
        return next(itertools.islice(iter(self), i, None))

    def __repr__(self) -> str:
        return f"RoundLog({str(self.out_dir)!r}, {self._count} rows)"


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """Write ``metrics`` as ``json.dumps(metrics, indent=2)`` would, plus a newline, atomically;
    a ``RoundLog`` value is written row by row, read from its file, never held whole."""

    def write(fh: IO[bytes]) -> None:
        if not metrics:
            fh.write(b"{}\n")
            return
        sep = "{"
        for key, value in metrics.items():
            if not isinstance(key, str):
                raise TypeError(f"metrics keys are strings, not {key!r}")
            fh.write(f"{sep}\n  {json.dumps(key)}: ".encode())
            sep = ","
            if isinstance(value, RoundLog):
                _write_rows(fh, value)
            else:
                fh.write(_nested(value, 1).encode())
        fh.write(b"\n}\n")

    atomic_write(path, write)


def _write_rows(fh: IO[bytes], rows: Iterable[dict[str, Any]]) -> None:
    """A list of rows at depth 1, as ``json.dumps(..., indent=2)`` lays it out."""
    sep = "["
    for row in rows:
        fh.write(f"{sep}\n    {_nested(row, 2)}".encode())
        sep = ","
    fh.write(b"[]" if sep == "[" else b"\n  ]")


def _nested(value: Any, depth: int) -> str:
    """``json.dumps(value, indent=2)`` as it appears ``depth`` levels down (a newline in the
    text is always layout: JSON strings escape theirs)."""
    return json.dumps(value, indent=2).replace("\n", "\n" + "  " * depth)


def fingerprint(config: Config) -> dict[str, Any]:
    """What a checkpoint must agree with to be resumed: the session, training and privacy
    settings."""
    settings = dataclasses.asdict(config.training)
    settings.pop("rounds")  # a run may be resumed with more rounds
    settings.pop("dataset_path")  # where MNIST's files are is the host's own; they may move between runs
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
