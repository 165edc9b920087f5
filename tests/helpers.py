"""Shared test helpers: free loopback ports, generated hosts.toml files, player processes, an
in-process runtime under a hard timeout, and a TCP proxy. Fixtures built on them are in
``tests/conftest.py``; test modules import from here, never from one another."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np

from asyncmpc.config import Config, parse_config

ROOT = Path(__file__).resolve().parent.parent
RUN_ROLE = ROOT / "scripts" / "run_role.py"
ATTACKER = ROOT / "tests" / "players" / "attacker.py"

SERVERS = ["server-0", "server-1", "server-2"]
OWNERS = ["data-owner-0", "data-owner-1", "data-owner-2"]
ALL = [*SERVERS, "model-owner", *OWNERS]
"""Every player of a deployment of three data owners, servers first (they listen)."""


# --- ports ---------------------------------------------------------------------------------

PORTS = range(20000, 32768)
"""Where the tests' players listen: below the ports the system hands out for outgoing
connections (Linux: 32768 and up, macOS and Windows: 49152 and up), so no connection's own
end can take a port between the moment it is chosen and the moment a player listens on it."""
BLOCK = 400
"""Ports per test process. Each process (an xdist worker, or a plain pytest run) holds one block
of PORTS through a lock file for as long as it lives, so concurrent runs never share a port."""


class _PortBlock:
    """The block of PORTS this process holds, handed out in turn (wrapping round)."""

    def __init__(self) -> None:
        self.lock: IO[bytes] | None = None
        self.ports: range = range(0)
        self.next = 0

    def acquire(self) -> None:
        for start in range(PORTS.start, PORTS.stop - BLOCK + 1, BLOCK):
            lock = open(Path(tempfile.gettempdir()) / f"asyncmpc-test-ports-{start}.lock", "wb")  # noqa: SIM115
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when this process ends
            except BlockingIOError:
                lock.close()
                continue
            self.lock, self.ports = lock, range(start, start + BLOCK)
            return
        raise RuntimeError(f"every block of {BLOCK} ports in {PORTS} is held by another test process")

    def take(self, n: int) -> list[int]:
        if self.lock is None:
            self.acquire()
        chosen: list[int] = []
        for _ in range(len(self.ports)):
            port = self.ports[self.next]
            self.next = (self.next + 1) % len(self.ports)
            if _bindable(port):  # not in use, nor lingering from an earlier test (TIME_WAIT)
                chosen.append(port)
                if len(chosen) == n:
                    return chosen
        raise RuntimeError(f"fewer than {n} free ports in {self.ports}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_block = _PortBlock()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1, none handed out before by this process (until its
    block wraps round) nor by any other test process running now."""
    return _block.take(n)


# --- deployment files ----------------------------------------------------------------------


def hosts_toml(
    owners: int = 3,
    *,
    session: str = "test",
    protocol: str = "",
    training: str = "",
    ports: list[int] | None = None,
    extra: dict[str, str] | None = None,
    tls: bool = False,
) -> str:
    """The text of a loopback deployment with fresh ports; ``extra`` adds lines to a player's table.

    With ``tls`` every connection is TLS with files in ``certs`` beside the file (see
    ``write_config``); otherwise the deployment asks for plaintext, which loopback allows.
    """
    ports = ports or free_ports(4)
    extra = extra or {}
    lines = [
        f'session = "{session}"',
        "",
        *(["[tls]", 'dir = "certs"', ""] if tls else []),
        "[protocol]",
        f"plaintext = {'false' if tls else 'true'}",
        *[f"{k} = {v}" for k, v in (("connect_timeout", 30.0), ("round_timeout", 60.0)) if k not in protocol],
        protocol,
        "",
    ]
    if training:
        lines += ["[training]", training, ""]
    mo = "model-owner"
    lines += [f"[players.{mo}]", 'role = "model-owner"', 'host = "127.0.0.1"', f"port = {ports[0]}", extra.get(mo, "")]
    for i in range(3):
        name = f"server-{i}"
        lines += [f"[players.{name}]", 'role = "compute-server"', 'host = "127.0.0.1"', f"port = {ports[1 + i]}"]
        lines += [extra.get(name, ""), ""]
    for i in range(owners):
        name = f"data-owner-{i}"
        lines += [f"[players.{name}]", 'role = "data-owner"', 'host = "127.0.0.1"', extra.get(name, ""), ""]
    return "\n".join(lines)


def write_config(directory: Path, text: str | None = None, **kwargs: object) -> Path:
    """Write a deployment file into ``directory``, and its TLS files when it uses TLS."""
    from asyncmpc.config import load_config
    from asyncmpc.net.pki import make_certs

    path = directory / "hosts.toml"
    path.write_text(text if text is not None else hosts_toml(**kwargs))  # type: ignore[arg-type]
    config = load_config(path)
    if config.tls_dir is not None:
        make_certs(config, config.tls_dir)
    return path


# --- player processes ----------------------------------------------------------------------


class Players:
    """Player processes started by a test; every one is killed when the test ends."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        """The newest process of each player."""
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a process; its output is appended to NAME.log (a restarted player's too)."""
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise AssertionError(f"{name} is still running")
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=full_env)
        log.close()
        self.procs[name] = proc
        self.started.append(proc)
        return proc

    def start_role(
        self,
        config: Path,
        name: str,
        *extra: str,
        env: dict[str, str] | None = None,
        attack: list[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start player ``name``; with ``attack`` (tests/players/attacker.py's options, e.g.
        ``["--lie", "vector:every"]``) as the attacker that changes what it sends."""
        program = [str(RUN_ROLE)] if attack is None else [str(ATTACKER), *attack]
        argv = [sys.executable, *program, "--config", str(config), "--name", name, *extra]
        return self.start(name, argv, env)

    def wait(self, name: str, timeout: float) -> int:
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not exit within {timeout}s; log:\n{self.log(name)}") from None

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the newest process of ``name``; after SIGKILL, wait until it is gone."""
        self.procs[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait()

    def kill_all(self) -> None:
        """Kill every process this test started (stopped ones too), by PID, and reap them."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
        for proc in self.started:
            proc.wait()


@contextmanager
def players(log_dir: Path) -> Iterator[Players]:
    """Players whose processes are all killed when the block ends (the ``procs`` fixture is one
    for the whole test; this is for a test that runs several deployments one after another)."""
    p = Players(log_dir)
    try:
        yield p
    finally:
        p.kill_all()


def start(procs: Players, config: Path, out: Path, names: list[str] = ALL, attack: list[str] | None = None) -> None:
    """Start ``names`` (default every player) with ``config``, the model owner writing to ``out``
    (with ``attack``, each as ``tests/players/attacker.py`` with those options)."""
    for name in names:
        procs.start_role(config, name, "--out", str(out), attack=attack)


def finish(procs: Players, names: list[str] = ALL, timeout: float = 240) -> None:
    """Wait until each of ``names`` has exited with status 0."""
    for name in names:
        assert procs.wait(name, timeout) == 0, f"{name} failed:\n{procs.log(name)}"


def run_deployment(
    procs: Players,
    config: Path,
    *,
    mo_config: Path | None = None,
    timeout: float = 180,
    expect_failures: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """Run every player, the model owner writing to ``out`` in the log folder (with ``mo_config``
    in place of ``config`` if given); each must exit 0, except those in ``expect_failures``,
    which must exit 2. Returns the run's metrics.json."""
    out = procs.log_dir / "out"
    for name in ALL:
        own = mo_config if mo_config is not None and name == "model-owner" else config
        procs.start_role(own, name, "--out", str(out))
    for name in ALL:
        expected = 2 if name in expect_failures else 0
        assert procs.wait(name, timeout) == expected, f"{name} exited otherwise:\n{procs.log(name)}"
    return json.loads((out / "metrics.json").read_text())  # type: ignore[no-any-return]


def saved_theta(out: Path) -> np.ndarray:
    """The parameters in a run folder's checkpoint."""
    with np.load(out / "checkpoint.npz") as f:
        return f["theta"]


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error line on stderr, after checking that it is the only output of note."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("asyncmpc:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate`` (a callable) until it is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- the runtime in this process -----------------------------------------------------------

LIMIT = 20.0
"""Seconds a test of the runtime in this process may take (``within``)."""


def loopback_config(**kwargs: object) -> Config:
    """A loopback deployment of three data owners with fresh ports, parsed (``hosts_toml``'s options)."""
    return parse_config(hosts_toml(3, **kwargs), "test.toml")  # type: ignore[arg-type]


def within(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run ``coro_fn()`` in a new event loop, failing after ``LIMIT`` seconds."""

    async def guarded() -> None:
        async with asyncio.timeout(LIMIT):
            await coro_fn()

    asyncio.run(guarded())


class ForwardingProxy:
    """A TCP proxy on its own thread: forwards connections from ``listen`` to ``target``.

    Every byte that crosses, both ways, is kept in ``seen``. ``downstream``, if given, rewrites
    what flows back from the target (it gets each chunk read, returns the bytes to forward, or
    None to cut the connection half-way through that chunk).
    Use as a context manager; it closes everything on exit.
    """

    def __init__(self, listen: int, target: int, downstream: Callable[[bytes], bytes | None] | None = None) -> None:
        self.listen, self.target, self.downstream = listen, target, downstream
        self.seen = bytearray()
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.listen))
        self.ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, rewrite: bool) -> None:
            while data := await src.read(1 << 16):
                self.seen += data
                out = self.downstream(data) if rewrite and self.downstream else data
                if out is None:  # cut the connection here, in the middle of this chunk
                    dst.write(data[: len(data) // 2])
                    await dst.drain()
                    for w in (writer, up_writer):
                        w.transport.abort()
                    return
                dst.write(out)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, False), pipe(up_reader, writer, True), return_exceptions=True)

    async def _close(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> ForwardingProxy:
        self.thread.start()
        assert self.ready.wait(10), f"the proxy did not start listening on {self.listen}"
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
