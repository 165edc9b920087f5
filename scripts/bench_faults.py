#!/usr/bin/env python3
"""What faults cost: a server killed mid-round, and a model owner killed and started again.

Runs a synthetic deployment (every player a process, plaintext loopback unless --tls), kills
server-1 with SIGKILL while a round is under way and reports the time from the kill to the end
of that round; then kills the model owner, starts it again with the same --out, and reports the
time from its start to the end of its first round after the resume (with --server-down,
while server-1 is still down).

    python scripts/bench_faults.py --d 1000000 --rounds 60
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.cli.benchmark import PLAYER, deployment  # noqa: E402
from asyncmpc.learning.checkpoint import checkpoint_header, read_rounds  # noqa: E402


def rounds_done(out: Path) -> int:
    return len(read_rounds(out))


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("bench_faults: timed out")
        time.sleep(0.002)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1_000_000)
    ap.add_argument("--owners", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--server-down", action="store_true", help="leave server-1 down while the model owner restarts")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncmpc-faults-") as tmp:
        folder = Path(tmp)
        cfg = folder / "hosts.toml"
        cfg.write_text(deployment(args.d, args.owners, args.rounds, "secure", 16, args.tls))
        if args.tls:
            from asyncmpc.config import load_config
            from asyncmpc.net.pki import make_certs

            make_certs(load_config(cfg), folder / "certs")
        out = folder / "out"
        names = ["server-0", "server-1", "server-2", "model-owner"] + [f"data-owner-{i}" for i in range(args.owners)]
        procs: dict[str, subprocess.Popen[bytes]] = {}
        started: list[subprocess.Popen[bytes]] = []

        def start(name: str) -> None:
            log = open(folder / f"{name}.log", "ab")  # noqa: SIM115
            argv = [*PLAYER, "--config", str(cfg), "--name", name, "--out", str(out)]
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=log)
            started.append(procs[name])

        try:
            for name in names:
                start(name)
            wait_for(lambda: rounds_done(out) >= 10, 300)
            n = rounds_done(out)
            time.sleep(0.3 * _median_round(out))  # into the next round
            killed = time.monotonic()
            procs["server-1"].send_signal(signal.SIGKILL)
            wait_for(lambda: rounds_done(out) > n, 120)
            death_to_end = time.monotonic() - killed
            n = rounds_done(out)
            wait_for(lambda: rounds_done(out) >= n + 5, 120)
            two_servers = _median_round(out, last=5)
            if not args.server_down:
                start("server-1")
                wait_for(lambda: _last_servers(out) == 3, 120)
            procs["model-owner"].send_signal(signal.SIGKILL)
            procs["model-owner"].wait()
            n = rounds_done(out)
            restarted = time.monotonic()
            start("model-owner")
            wait_for(lambda: rounds_done(out) > 0 and _resumed_rounds(out) >= 1, 300)
            back = time.monotonic() - restarted
        finally:
            for p in started:
                if p.poll() is None:
                    p.kill()
                p.wait()
        print(f"d = {args.d}, {args.owners} owners, {'TLS' if args.tls else 'plaintext'}")
        print(f"server killed mid-round -> that round ended: {death_to_end * 1e3:.0f} ms")
        print(f"median round on two servers afterwards: {two_servers * 1e3:.1f} ms")
        down = " (server-1 still down)" if args.server_down else ""
        print(f"model owner restarted{down} -> first round after the resume ended: {back:.2f} s")


def _median_round(out: Path, last: int = 10) -> float:
    secs = sorted(r["seconds"] for r in read_rounds(out)[-last:])
    return secs[len(secs) // 2]


def _last_servers(out: Path) -> int:
    rows = read_rounds(out)
    return len(rows[-1].get("servers", [])) if rows else 0


def _resumed_rounds(out: Path) -> int:
    """Rounds checkpointed since the model owner last resumed."""
    header = checkpoint_header(out)
    resumed = (header or {}).get("meta", {}).get("resumed_after")
    return int(header["round"]) - resumed[-1] if header and resumed else 0


if __name__ == "__main__":
    main()
