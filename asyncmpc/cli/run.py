"""``asyncmpc run``: one player (what ``scripts/run_role.py`` starts)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncmpc.cli.common import add_config, fail
from asyncmpc.config import Config, Role, load_config
from asyncmpc.errors import AsyncMpcError

if TYPE_CHECKING:  # the player's modules are imported when it runs, so a player starts fast
    from asyncmpc.net.transport import Opener

__all__ = ["add_arguments", "command"]


class _PlayerFilter(logging.Filter):
    def __init__(self, player: str) -> None:
        super().__init__()
        self.player = player

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "player"):  # a role's or the network's records name their player
            record.player = self.player
        return True


class _JsonFormatter(logging.Formatter):
    """One JSON object per line, for log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        doc = {
            "time": round(record.created, 6),
            "player": getattr(record, "player", ""),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def setup_logging(player: str, level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(player)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_PlayerFilter(player))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config(parser)
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--name", help="this player's name in the deployment file")
    who.add_argument(
        "--swarm",
        action="store_true",
        help="run every data owner of the deployment file in this one process, as asyncio tasks",
    )
    parser.add_argument("--out", default="runs/latest", help="model owner's output folder (default: runs/latest)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="model owner: start training afresh instead of resuming from OUT/checkpoint.npz",
    )
    parser.add_argument("--stats", help="write this process's peak memory and traffic to this JSON file at exit")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="(default: INFO)")
    loud = parser.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="debug logging, and a traceback with every error")
    loud.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only; no progress bar")
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per log line, for log collectors (no progress bar)",
    )


def _swarm(config: Config) -> Any:
    """Every data owner as a task of one event loop (for deployments of hundreds of owners)."""
    import asyncio
    import resource

    from asyncmpc.net.runtime import run
    from asyncmpc.roles.data_owner import run_data_owner

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 8 * len(config.data_owners) + 256))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    async def all_owners() -> dict[str, Any]:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run_data_owner(config, p.name, prepare_ahead=False)) for p in config.data_owners]
        results = [t.result() for t in tasks]
        return {
            "owners": len(results),
            "bytes_sent": sum(r["bytes_sent"] for r in results),
            "bytes_received": sum(r["bytes_received"] for r in results),
        }

    return run(all_owners, uvloop_ok=config.protocol.plaintext)


def _write_stats(path: str, player: str, role: str, extra: dict[str, Any]) -> None:
    import json
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak = usage.ru_maxrss * 1024  # Linux reports KiB
    cpu = usage.ru_utime + usage.ru_stime
    doc = {"player": player, "role": role, "peak_rss_bytes": peak, "cpu_seconds": cpu, **extra}
    Path(path).write_text(json.dumps(doc) + "\n")


def tune_allocator() -> None:
    """On glibc, serve arrays up to 32 MiB from the heap and keep freed memory for reuse.

    By default glibc maps every large allocation afresh and unmaps it when freed, so each
    round's frames and arrays pay page faults again (about 2 ms per 8 MB here). Elsewhere this
    does nothing.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)
    mallopt(m_trim_threshold, 1 << 30)


def command(args: argparse.Namespace, *, opener: Opener | None = None) -> int:
    """Run the player ``args`` names (its connections from ``opener``: default a TCP ``Node``)."""
    tune_allocator()
    who = "data-owner swarm" if args.swarm else args.name
    level = args.log_level or ("DEBUG" if args.verbose else "WARNING" if args.quiet else "INFO")
    setup_logging(who, level, args.log_format)
    try:
        config = load_config(args.config)
        if args.swarm:
            role = Role.DATA_OWNER
            stats = _swarm(config)
        else:
            role = config.player(args.name).role
            quiet = args.quiet or args.log_format == "json"
            stats = _run_player(config, args.name, role, Path(args.out), fresh=args.fresh, quiet=quiet, opener=opener)
        if args.stats:
            _write_stats(args.stats, who, role, stats)
    except AsyncMpcError as exc:
        return fail(who, exc, verbose=args.verbose)
    except ExceptionGroup as group:  # from a task group: one line if every error is ours
        ours, rest = group.split(AsyncMpcError)
        if ours is None or rest is not None:
            raise
        return fail(who, _leaves(ours)[0], verbose=args.verbose)
    except KeyboardInterrupt:
        return 130
    return 0


def _leaves(group: BaseExceptionGroup[AsyncMpcError]) -> list[AsyncMpcError]:
    out: list[AsyncMpcError] = []
    for exc in group.exceptions:
        out += _leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc]
    return out


def _run_player(
    config: Config,
    name: str,
    role: str,
    out: Path,
    *,
    fresh: bool = False,
    quiet: bool = False,
    opener: Opener | None = None,
) -> dict[str, Any]:
    from asyncmpc.net.runtime import run

    if role == Role.COMPUTE_SERVER:
        from asyncmpc.roles.compute_server import run_compute_server

        return run(lambda: run_compute_server(config, name, opener=opener), uvloop_ok=config.protocol.plaintext)  # type: ignore[no-any-return]
    if role == Role.DATA_OWNER:
        from asyncmpc.roles.data_owner import run_data_owner

        return run(lambda: run_data_owner(config, name, opener=opener), uvloop_ok=config.protocol.plaintext)  # type: ignore[no-any-return]
    from asyncmpc.cli.progress import progress_for
    from asyncmpc.roles.model_owner import run_model_owner

    progress = progress_for(sys.stderr, quiet=quiet)
    metrics = run(
        lambda: run_model_owner(config, name, out, opener=opener, fresh=fresh, progress=progress),
        uvloop_ok=config.protocol.plaintext,
    )
    from asyncmpc.learning.report import PLOT, plot, summary

    for line in summary(metrics):
        print(line)
    if metrics.get("finished_before"):
        print(f"{out}: every round was done already; its outputs are left as they were (--fresh trains again)")
    else:
        if plot(metrics, out / PLOT):
            print(f"wrote {out / PLOT}")
        print(f"wrote {out}")
    return {
        "bytes_sent": metrics["model_owner_bytes"]["sent"],
        "bytes_received": metrics["model_owner_bytes"]["received"],
    }
