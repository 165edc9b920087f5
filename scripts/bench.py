#!/usr/bin/env python3
"""Secure aggregation against the plaintext floor, with every player a process on localhost.

For each d (parameters) and number of data owners, it runs R rounds of secure aggregation of
synthetic gradients (three servers, the model owner, the owners) and the same rounds as
plaintext federated averaging over the same transport (owners send float64 gradients straight
to the model owner, which averages and sends the model back). Owners run as one process each,
or, above --swarm-above owners, as tasks of one swarm process. Prints a table, or with --json
one object per run: mode, d, owners, rounds, round seconds (median, min, max), bytes sent and
received and peak RSS per role, and the secure/plain ratio of median round times.

With --repeat N each configuration is launched N times, secure and plain alternating, and the
round times of all launches are pooled (the machine's noise moves single launches by 20-30%).

With --mac-rounds always every secure round is a MAC round; with --cheat SERVER=WHAT:WHEN that
server lies (the tests' fault injection, ``roles.cheat``), e.g. ``server-1=vector:ordinary``
with --mac-window 0 makes every round a disputed round plus its MAC re-run.

Usage: bench.py [--d 10000 1000000] [--owners 3 10] [--rounds 5] [--modes secure plain]
                [--tls off|on|both] [--repeat 1] [--mac-rounds always] [--mac-window N]
                [--cheat SERVER=WHAT:WHEN] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.roles.cheat import CHEAT_ENV  # noqa: E402
from asyncmpc.tls import make_certs  # noqa: E402
from asyncmpc.workload import synthetic_mean  # noqa: E402

RUN_ROLE = ROOT / "scripts" / "run_role.py"


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def deployment(
    d: int,
    owners: int,
    rounds: int,
    mode: str,
    frac_bits: int,
    tls: bool = False,
    connect_timeout: float = 120.0,
    protocol: tuple[str, ...] = (),
) -> str:
    ports = free_ports(4)
    lines = [
        'session = "bench"',
        *(["[tls]", 'dir = "certs"'] if tls else []),
        "[protocol]",
        *protocol,
        f"plaintext = {'false' if tls else 'true'}",
        f"frac_bits = {frac_bits}",
        f"max_owners = {max(owners, 2)}",
        "round_timeout = 600.0",
        f"connect_timeout = {connect_timeout}",
        "[training]",
        'dataset = "synthetic"',
        f"parameters = {d}",
        f"rounds = {rounds}",
        "learning_rate = 0.1",
        f'aggregation = "{mode}"',
        "[players.model-owner]",
        'role = "model-owner"',
        'host = "127.0.0.1"',
        f"port = {ports[0]}",
    ]
    for i in range(3):
        lines += [f"[players.server-{i}]", 'role = "compute-server"', 'host = "127.0.0.1"', f"port = {ports[1 + i]}"]
    for i in range(owners):
        lines += [f"[players.data-owner-{i}]", 'role = "data-owner"', 'host = "127.0.0.1"']
    return "\n".join(lines) + "\n"


def run_one(
    tmp: Path,
    d: int,
    owners: int,
    rounds: int,
    mode: str,
    swarm_above: int,
    frac_bits: int,
    tls: bool,
    down: str | None = None,
    protocol: tuple[str, ...] = (),
    cheat: tuple[str, str] | None = None,
) -> dict[str, Any]:
    folder = tmp / f"{mode}-{d}-{owners}-{'tls' if tls else 'plaintext'}"
    folder.mkdir(parents=True)
    cfg = folder / "hosts.toml"
    # with a server down, the model owner waits connect_timeout for it, then trains with two
    cfg.write_text(
        deployment(d, owners, rounds, mode, frac_bits, tls, connect_timeout=3.0 if down else 120.0, protocol=protocol)
    )
    if tls:
        make_certs(load_config(cfg), folder / "certs")
    servers = [s for s in ("server-0", "server-1", "server-2") if s != down]
    names = (servers if mode == "secure" else []) + ["model-owner"]
    swarm = owners > swarm_above
    if not swarm:
        names += [f"data-owner-{i}" for i in range(owners)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    base = [sys.executable, str(RUN_ROLE), "--config", str(cfg), "--log-level", "WARNING"]
    try:
        for name in names:
            argv = [*base, "--name", name, "--stats", str(folder / f"{name}.stats.json"), "--out", str(folder)]
            log = open(folder / f"{name}.log", "wb")  # noqa: SIM115
            env = {**os.environ, CHEAT_ENV: cheat[1]} if cheat and cheat[0] == name else None
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        if swarm:
            argv = [*base, "--swarm", "--stats", str(folder / "swarm.stats.json")]
            procs["swarm"] = subprocess.Popen(argv, stderr=open(folder / "swarm.log", "wb"))  # noqa: SIM115
        for name, proc in procs.items():
            if proc.wait(timeout=3600) != 0 and not (cheat and cheat[0] == name):
                raise SystemExit(
                    f"{mode} d={d} owners={owners}: {name} failed:\n{(folder / f'{name}.log').read_text()}"
                )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    metrics = json.loads((folder / "metrics.json").read_text())
    secs = [r["seconds"] for r in metrics["rounds"]]
    ends = [r["time"] for r in metrics["rounds"] if "time" in r]
    wall = {}
    if len(ends) >= 201:  # wall time per round (checkpoint and log writes included), first and last 100
        wall = {"first_100": (ends[100] - ends[0]) / 100, "last_100": (ends[-1] - ends[-101]) / 100}
    kinds = {
        "disputed": sum(1 for r in metrics["rounds"] if r.get("disputed")),
        "mac": sum(1 for r in metrics["rounds"] if r.get("mac")),
        "excluded": sorted(metrics.get("excluded_servers", {})),
    }
    roles: dict[str, dict[str, Any]] = {}
    for f in folder.glob("*.stats.json"):
        st = json.loads(f.read_text())
        key = (
            "model-owner"
            if st["role"] == "model-owner"
            else ("server" if st["role"] == "compute-server" else "data-owner")
        )
        agg = roles.setdefault(
            key, {"peak_rss_bytes": 0, "bytes_sent": 0, "bytes_received": 0, "cpu_seconds": 0.0, "processes": 0}
        )
        agg["cpu_seconds"] += st["cpu_seconds"]
        agg["peak_rss_bytes"] = max(agg["peak_rss_bytes"], st["peak_rss_bytes"])
        agg["bytes_sent"] += st["bytes_sent"]
        agg["bytes_received"] += st["bytes_received"]
        agg["processes"] += 1
    with np.load(folder / "model.npz") as f:
        theta = f["theta"]
    expected = -0.1 * rounds * synthetic_mean(load_config(cfg), owners)
    return {
        "mode": mode,
        "tls": tls,
        "d": d,
        "owners": owners,
        "rounds": rounds,
        "swarm": swarm,
        "round_seconds": {"median": statistics.median(secs), "min": min(secs), "max": max(secs)},
        "all_round_seconds": secs,
        "round_kinds": kinds,
        "wall_per_round": wall,
        "upload_per_owner_bytes_per_round": roles["data-owner"]["bytes_sent"] / owners / rounds,
        "roles": roles,
        "max_abs_error_vs_exact_mean": float(np.abs(theta - expected).max()),
    }


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result for several launches of a configuration: round times pooled, the rest per launch
    averaged (bytes, CPU) or the maximum (peak RSS, error)."""
    out = dict(runs[0])
    secs = [s for r in runs for s in r["all_round_seconds"]]
    out["round_seconds"] = {"median": statistics.median(secs), "min": min(secs), "max": max(secs)}
    out["all_round_seconds"] = secs
    out["launches"] = len(runs)
    out["wall_seconds"] = sum(r["wall_seconds"] for r in runs) / len(runs)
    out["max_abs_error_vs_exact_mean"] = max(r["max_abs_error_vs_exact_mean"] for r in runs)
    out["upload_per_owner_bytes_per_round"] = statistics.mean(r["upload_per_owner_bytes_per_round"] for r in runs)
    out["roles"] = {}
    for role in runs[0]["roles"]:
        per = [r["roles"][role] for r in runs]
        out["roles"][role] = {
            "peak_rss_bytes": max(p["peak_rss_bytes"] for p in per),
            "bytes_sent": statistics.mean(p["bytes_sent"] for p in per),
            "bytes_received": statistics.mean(p["bytes_received"] for p in per),
            "cpu_seconds": statistics.mean(p["cpu_seconds"] for p in per),
            "processes": per[0]["processes"],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--owners", type=int, nargs="+", default=[3, 10])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["secure", "plain"], choices=["secure", "plain"])
    ap.add_argument("--swarm-above", type=int, default=10, help="more owners than this run as one swarm process")
    ap.add_argument("--frac-bits", type=int, default=16)
    ap.add_argument("--tls", choices=["off", "on", "both"], default="off", help="TLS on every connection")
    ap.add_argument("--repeat", type=int, default=1, help="launches per configuration, round times pooled")
    ap.add_argument(
        "--down-server",
        choices=["server-0", "server-1", "server-2"],
        help="never start this server: secure rounds run on the other two (no cross-check)",
    )
    ap.add_argument("--mac-rounds", choices=["after-dispute", "always"], default="after-dispute")
    ap.add_argument("--mac-window", type=int, default=10, help="MAC rounds after a dispute")
    ap.add_argument("--cheat", help="SERVER=WHAT:WHEN: that server lies (see roles/cheat.py)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    protocol = (f'mac_rounds = "{args.mac_rounds}"', f"mac_window = {args.mac_window}")
    cheat = tuple(args.cheat.split("=", 1)) if args.cheat else None
    results = []
    with tempfile.TemporaryDirectory(prefix="asyncmpc-bench-") as tmp:
        tls_modes = {"off": [False], "on": [True], "both": [False, True]}[args.tls]
        for d in args.d:
            for owners in args.owners:
                for tls in tls_modes:
                    launches: dict[str, list[dict[str, Any]]] = {mode: [] for mode in args.modes}
                    for rep in range(args.repeat):
                        for mode in args.modes:
                            t0 = time.perf_counter()
                            r = run_one(
                                Path(tmp) / str(rep),
                                d,
                                owners,
                                args.rounds,
                                mode,
                                args.swarm_above,
                                args.frac_bits,
                                tls,
                                args.down_server,
                                protocol if mode == "secure" else (),
                                cheat if mode == "secure" else None,  # type: ignore[arg-type]
                            )
                            r["wall_seconds"] = time.perf_counter() - t0
                            launches[mode].append(r)
                    pair = {mode: pooled(runs) for mode, runs in launches.items()}
                    results += pair.values()
                    if "secure" in pair and "plain" in pair:
                        ratio = pair["secure"]["round_seconds"]["median"] / pair["plain"]["round_seconds"]["median"]
                        pair["secure"]["secure_over_plain"] = ratio
                        pair["plain"]["secure_over_plain"] = ratio
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    mib = 1 << 20
    print(
        f"{'mode':6} {'tls':>3} {'d':>9} {'owners':>6} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'ratio':>6} "
        f"{'up/owner':>9} {'RSS MiB srv':>11} {'RSS MiB MO':>10} {'RSS MiB DO':>10} {'max err':>9} "
        f"{'disputed/mac':>12}"
    )
    for r in results:
        rs, roles = r["round_seconds"], r["roles"]
        ratio = r.get("secure_over_plain")
        srv = roles.get("server", {}).get("peak_rss_bytes", 0) / mib
        print(
            f"{r['mode']:6} {'on' if r['tls'] else 'off':>3} {r['d']:9d} {r['owners']:6d} "
            f"{rs['median'] * 1e3:10.2f} {rs['min'] * 1e3:8.2f} "
            f"{rs['max'] * 1e3:8.2f} {ratio if ratio is not None else float('nan'):6.2f} "
            f"{r['upload_per_owner_bytes_per_round'] / (8 * r['d']):8.3f}x {srv:11.0f} "
            f"{roles['model-owner']['peak_rss_bytes'] / mib:10.0f} {roles['data-owner']['peak_rss_bytes'] / mib:10.0f} "
            f"{r['max_abs_error_vs_exact_mean']:9.2e} "
            f"{r['round_kinds']['disputed']:>6}/{r['round_kinds']['mac']:<5}"
        )
        if r["wall_per_round"]:
            w = r["wall_per_round"]
            print(
                f"  wall time per round: {w['first_100'] * 1e3:.2f} ms over the first 100, "
                f"{w['last_100'] * 1e3:.2f} ms over the last 100"
            )


if __name__ == "__main__":
    main()
