#!/usr/bin/env python3
"""What the command line costs: start-up, and the per-round cost of progress and the round log.

- ``asyncmpc --help``: wall time of the whole process (median of --repeat runs).
- A compute server from its start until it listens (the "listening on" line), median.
- Per round, at 4,000 rounds, in one process: the progress bar on a terminal (writing to a
  pseudo-terminal), a plain log line (to a pipe), appending the row to metrics.jsonl (with its
  fsync, which the model owner does on a worker thread), and, for comparison, rewriting a
  metrics.json that holds every row so far (what the model owner did before).

Usage: bench_cli.py [--repeat 5] [--rounds 4000]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.cli.benchmark import deployment  # noqa: E402
from asyncmpc.cli.progress import BarProgress  # noqa: E402
from asyncmpc.learning.checkpoint import append_round  # noqa: E402

ASYNCMPC = [sys.executable, "-c", "import sys; from asyncmpc.cli import main; sys.exit(main())"]


def startup(repeat: int) -> tuple[float, float]:
    helps, listens = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "hosts.toml"
        cfg.write_text(deployment(1000, 2, 1, "secure", 16))
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([*ASYNCMPC, "--help"], capture_output=True, check=True)
            helps.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [*ASYNCMPC, "run", "--config", str(cfg), "--name", "server-0"], stderr=subprocess.PIPE, text=True
            )
            assert proc.stderr is not None
            for line in proc.stderr:
                if "listening on" in line:
                    listens.append(time.perf_counter() - t0)
                    break
            proc.kill()
            proc.wait()
    return statistics.median(helps), statistics.median(listens)


def row(t: int) -> dict[str, object]:
    return {
        "round": t,
        "contributors": ["data-owner-0", "data-owner-1", "data-owner-2"],
        "servers": ["server-0", "server-1", "server-2"],
        "cross_checked": True,
        "loss": 0.25,
        "test_accuracy": 0.95,
        "seconds": 0.006,
        "time": time.time(),
    }


def per_round(rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    master, slave = pty.openpty()
    term = os.fdopen(slave, "w")
    bar = BarProgress(term)
    bar.start(rounds, 0)
    t0 = time.perf_counter()
    for t in range(1, rounds + 1):
        bar.round(row(t))
        while True:  # drain the terminal, as a terminal emulator would
            try:
                if not os.read(master, 1 << 16):
                    break
            except BlockingIOError:
                break
            os.set_blocking(master, False)
    out["per round, the progress bar on a terminal"] = (time.perf_counter() - t0) / rounds
    bar.close()
    log = logging.getLogger("bench")
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    t0 = time.perf_counter()
    for t in range(1, rounds + 1):
        log.info("round %d/%d: loss %.4f, test accuracy %.4f, %d contributors, %.3fs", t, rounds, 0.25, 0.95, 3, 0.006)
    out["per round, a log line"] = (time.perf_counter() - t0) / rounds
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        for t in range(1, rounds + 1):
            append_round(folder, row(t))
        out["per round, appending the row to metrics.jsonl (with fsync, on a worker thread)"] = (
            time.perf_counter() - t0
        ) / rounds
        rows = [row(t) for t in range(1, rounds + 1)]
        for n in (100, rounds):
            t0 = time.perf_counter()
            (folder / "metrics.json").write_text(json.dumps({"rounds": rows[:n]}, indent=2))
            os.fsync(os.open(folder / "metrics.json", os.O_RDONLY))
            out[f"one rewrite of a metrics.json of {n} rows (before, once per round)"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=4000)
    args = ap.parse_args()
    helps, listens = startup(args.repeat)
    print(f"asyncmpc --help: {helps * 1e3:.0f} ms; a compute server until it listens: {listens * 1e3:.0f} ms")
    for what, sec in per_round(args.rounds).items():
        print(f"{what}: {sec * 1e6:.0f} us")


if __name__ == "__main__":
    main()
