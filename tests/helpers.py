"""Shared test helpers: free loopback ports, generated hosts.toml files, player processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from asyncmpc.cli.benchmark import free_ports as free_ports  # the benchmarks' own, re-exported

ROOT = Path(__file__).resolve().parent.parent
RUN_ROLE = ROOT / "scripts" / "run_role.py"


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
    from asyncmpc.net.tls import make_certs

    path = directory / "hosts.toml"
    path.write_text(text if text is not None else hosts_toml(**kwargs))  # type: ignore[arg-type]
    config = load_config(path)
    if config.tls_dir is not None:
        make_certs(config, config.tls_dir)
    return path


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
        self, config: Path, name: str, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        argv = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", name, *extra]
        return self.start(name, argv, env)

    def wait(self, name: str, timeout: float) -> int:
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} did not exit within {timeout}s; log:\n{self.log(name)}") from None

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def kill_all(self) -> None:
        """Kill every process this test started (stopped ones too), by PID, and reap them."""
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
        for proc in self.started:
            proc.wait()


@contextmanager
def players(log_dir: Path) -> Iterator[Players]:
    p = Players(log_dir)
    try:
        yield p
    finally:
        p.kill_all()


def wait_until(predicate: object, timeout: float, what: str) -> None:
    """Poll ``predicate`` (a callable) until it is true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


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
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
