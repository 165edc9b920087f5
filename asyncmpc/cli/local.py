"""``asyncmpc local``: a whole deployment as processes on this machine, supervised.

Starts every player of the file (servers, then the model owner, then the data owners; the
order is a courtesy, since everyone dials again until the others are up), each logging to
OUT/logs/NAME.log. On a terminal the model owner's progress bar is shown as it is; elsewhere
its round lines, statistics and warnings are copied to stdout. A player that exits with an
error is reported (name, status, last lines of its log) and the others go on while the model
owner runs. Exits with the model owner's status; on Ctrl-C (or SIGTERM) stops every player
and exits with 130. Run again with the same OUT, the model owner resumes its checkpoint;
``--fresh`` starts afresh.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]

_SHOWN = re.compile(
    r"round \d+/|statistics|final test accuracy|contribut| is down| is back|paused|resum|done already|rror"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default="hosts.toml", help="deployment file (default: hosts.toml)")
    parser.add_argument("--out", default="runs/latest", help="outputs and logs/ (default: runs/latest)")
    parser.add_argument("--fresh", action="store_true", help="train afresh instead of resuming OUT/checkpoint.npz")
    parser.add_argument("-q", "--quiet", action="store_true", help="the model owner's warnings and errors only")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.cli.certs import ensure_certs
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError

    try:
        config = load_config(args.config)
        if config.tls_dir is not None:
            ensure_certs(config, config.tls_dir)  # throwaway TLS files for a local run
        out = Path(args.out)
        (out / "logs").mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        return fail("local", exc)
    except OSError as exc:
        return fail("local", OSError(f"{args.out}: cannot write: {exc.strerror or exc}"))
    mo = config.model_owner.name
    names = [p.name for p in config.servers] + [mo] + [p.name for p in config.data_owners]
    players = _Players(out, config.path)
    for signum in (signal.SIGINT, signal.SIGTERM):  # a flag, not an exception at any bytecode
        signal.signal(signum, players.interrupt)
    for name in names:
        extra = (["--fresh"] if args.fresh else []) + (["--quiet"] if args.quiet else []) if name == mo else []
        players.start(name, extra, show=name == mo)
    print(f"local: started {len(names)} players from {config.path}; logs in {out / 'logs'}", flush=True)
    before = _written(out / "metrics.json")
    status = players.supervise(mo)
    if players.interrupted.is_set():
        print("local: interrupted, stopping every player", file=sys.stderr)
        players.stop()
        return 130
    players.stop()
    if status == 0:
        traffic = players.traffic()
        if traffic:
            print("local: traffic per player")
            print("\n".join(traffic))
        if before is not None and _written(out / "metrics.json") == before:
            print(f"local: the run in {out} had finished already; its outputs are left as they were", end="")
            print(" (--fresh trains again)")
        else:
            print(f"local: training finished; wrote {out}/metrics.json, model.npz and training.png", end="")
            print(f" (asyncmpc report {out})")
    return status


def _written(path: Path) -> tuple[int, int] | None:
    """When and how large ``path`` was written (None: it is not there)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class _Players:
    def __init__(self, out: Path, config: str) -> None:
        self.out = out
        self.config = config
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._copiers: list[threading.Thread] = []
        self.interrupted = threading.Event()
        """Set by Ctrl-C or SIGTERM; the supervisor then stops every player."""

    def interrupt(self, signum: int, frame: object) -> None:
        self.interrupted.set()

    def log(self, name: str) -> Path:
        return self.out / "logs" / f"{name}.log"

    def stats(self, name: str) -> Path:
        return self.out / "logs" / f"{name}.stats.json"

    def traffic(self) -> list[str]:
        """A line per player that wrote its statistics: bytes sent and received, peak memory."""
        import json

        lines = []
        for name in self.procs:
            try:
                st = json.loads(self.stats(name).read_text())
            except (OSError, ValueError):
                continue
            lines.append(
                f"  {name}: sent {st['bytes_sent']:,} bytes, received {st['bytes_received']:,}, "
                f"peak memory {st['peak_rss_bytes'] / (1 << 20):.0f} MiB"
            )
        return lines

    def start(self, name: str, extra: list[str], *, show: bool) -> None:
        argv = [sys.executable, "-m", "asyncmpc", "run", "--config", str(self.config), "--name", name]
        argv += ["--out", str(self.out), "--stats", str(self.stats(name)), *extra]
        if show and sys.stderr.isatty():  # the progress bar, on this terminal
            self.procs[name] = subprocess.Popen(argv)
            return
        with open(self.log(name), "wb") as log:
            if not show:
                self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
                return
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        assert proc.stdout is not None
        copier = threading.Thread(target=_copy, args=(proc.stdout, self.log(name)), daemon=True)
        copier.start()
        self._copiers.append(copier)

    def supervise(self, mo: str) -> int:
        """Wait for the model owner, reporting anyone else who fails; then give the others ten
        seconds to finish on its word. The model owner's exit status."""
        reported: set[str] = set()
        while self.procs[mo].poll() is None:
            self._report_failures(reported, mo, "the other players go on")
            if self.interrupted.wait(0.2):
                return 130
        for copier in self._copiers:
            copier.join(5)
        status = self.procs[mo].returncode
        if status != 0:
            self._report(mo, status)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            if self.interrupted.wait(0.2):
                return 130
        if status == 0:
            self._report_failures(reported, mo, "")
        return status

    def _report_failures(self, reported: set[str], mo: str, then: str) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if name != mo and name not in reported and code not in (None, 0):
                reported.add(name)
                self._report(name, code)
                if then:
                    print(f"local: {then}", file=sys.stderr)

    def _report(self, name: str, code: int) -> None:
        try:
            tail = self.log(name).read_text(errors="replace").splitlines()[-5:]
        except OSError:
            tail = []
        print(f"local: {name} exited with status {code}; last lines of its log:", file=sys.stderr)
        for line in tail:
            print(f"    {line}", file=sys.stderr)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _copy(stream: IO[bytes], log: Path) -> None:
    """Copy the model owner's output to its log, and its progress lines to stdout."""
    with open(log, "ab") as fh:
        for raw in stream:
            fh.write(raw)
            fh.flush()
            line = raw.decode(errors="replace").rstrip("\n")
            if _SHOWN.search(line):
                print(line, flush=True)
