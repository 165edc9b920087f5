"""The aggregation benchmark (``asyncmpc bench``): secure aggregation against the
plaintext floor, with every player a process on localhost.

For each d (parameters) and number of data owners, it runs R rounds of secure aggregation of
synthetic gradients (three servers, the model owner, the owners) and the same rounds as
plaintext federated averaging over the same transport (owners send float64 gradients straight
to the model owner, which averages and sends the model back). Owners run as one process each,
or, above ``swarm_above`` owners, as tasks of one swarm process. ``run_all`` returns one result
per configuration and mode: round seconds (median, min, max), bytes sent and received and peak
RSS per role, the secure/plain ratio of median round times, and the error against the exact mean.

Mode ``secure-dp`` is secure aggregation under ``[privacy]`` (unit "owner", noise multiplier
1): every server deals Skellam noise into every round, so its round time against ``secure``
is the cost of differential privacy inside the MPC (its error column is the noise).

Mode ``secure-norm`` is secure aggregation with ``[protocol] norm_bound`` set (``Plan.norm_bound``,
model units): every round is a ``ModelUpdate`` round, so every one is norm-checked (each owner
shares its gradient in F_q with its norm proof, the servers check it). Its round time and upload
against ``secure`` are the cost of the check. A synthetic gradient's norm is about sqrt(d / 3)
(uniform in [-1, 1)); with the bound above it the owners are not clipped, the error column stays
at the encoding's rounding, and ``round_kinds`` counts the owners the servers left out
(``norm_failed``, from ``metrics.json``) and the rounds summed over fewer than every owner
(``short``): both 0 when every owner is accepted.

With ``repeat`` N each configuration is launched N times, secure and plain alternating, and the
round times of all launches are pooled (the machine's noise moves single launches by 20-30%).
``programs`` start some players with another command line in place of ``python -m asyncmpc
run`` (the same options follow): e.g. server-1 as the tests' lying server,
``python tests/players/attacker.py --lie vector:ordinary``, which with ``mac_window = 0``
makes every round a disputed round plus its MAC re-run.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from asyncmpc.config import Config, load_config
from asyncmpc.errors import AsyncMpcError
from asyncmpc.learning.workload import SyntheticOwner, synthetic_mean
from asyncmpc.net.pki import make_certs

__all__ = ["PLAYER", "Plan", "deployment", "free_ports", "loopback_players", "run_all", "synthetic_norm", "table"]

PLAYER = [sys.executable, "-m", "asyncmpc", "run"]
"""The command line that starts one player (options follow)."""


@dataclass(frozen=True)
class Plan:
    """What ``run_all`` measures: every combination of ``ds``, ``owners`` and ``tls``, each mode."""

    ds: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    owners: tuple[int, ...] = (3, 10)
    rounds: int = 5
    modes: tuple[str, ...] = ("secure", "plain")
    swarm_above: int = 10
    frac_bits: int = 16
    tls: tuple[bool, ...] = (False,)
    repeat: int = 1
    down_server: str | None = None
    protocol: tuple[str, ...] = ()
    """Extra ``[protocol]`` lines for the secure runs (MAC round policy)."""
    programs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(player, command line): players started with another program, options as for PLAYER."""
    norm_bound: float = 1000.0
    """Mode ``secure-norm``'s ``[protocol] norm_bound`` (model units): above a synthetic gradient's
    norm, sqrt(d / 3), up to d = 3 x 10^6, and at most the 1074 the check serves at 16 fractional bits."""


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    import socket

    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
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
    norm_bound: float = 0.0,
) -> str:
    """The hosts.toml of one launch; ``norm_bound`` is written for mode ``secure-norm`` only."""
    lines = [
        'session = "bench"',
        *(["[tls]", 'dir = "certs"'] if tls else []),
        "[protocol]",
        *protocol,
        *([f"norm_bound = {norm_bound!r}"] if mode == "secure-norm" else []),
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
        f'aggregation = "{"plain" if mode == "plain" else "secure"}"',
    ]
    if mode == "secure-dp":
        lines += ["[privacy]", 'unit = "owner"', "noise_multiplier = 1.0", "clip = 1.0"]
    return "\n".join(lines + loopback_players(owners)) + "\n"


def loopback_players(owners: int) -> list[str]:
    """The ``[players.NAME]`` tables of a deployment on 127.0.0.1 with free ports: the model
    owner, three servers and ``owners`` data owners."""
    ports = free_ports(4)
    lines = ["[players.model-owner]", 'role = "model-owner"', 'host = "127.0.0.1"', f"port = {ports[0]}"]
    for i in range(3):
        lines += [f"[players.server-{i}]", 'role = "compute-server"', 'host = "127.0.0.1"', f"port = {ports[1 + i]}"]
    for i in range(owners):
        lines += [f"[players.data-owner-{i}]", 'role = "data-owner"', 'host = "127.0.0.1"']
    return lines


def run_one(tmp: Path, plan: Plan, d: int, owners: int, tls: bool, mode: str) -> dict[str, Any]:
    """One launch: a deployment of ``owners`` data owners training ``plan.rounds`` rounds of ``d``
    parameters in ``mode``; every player a process, its stats and the model read back."""
    rounds, down = plan.rounds, plan.down_server
    secure = mode != "plain"
    protocol, programs = (plan.protocol, dict(plan.programs)) if secure else ((), {})
    folder = tmp / f"{mode}-{d}-{owners}-{'tls' if tls else 'plaintext'}"
    folder.mkdir(parents=True)
    cfg = folder / "hosts.toml"
    # with a server down, the model owner waits connect_timeout for it, then trains with two
    timeout = 3.0 if down else 120.0
    cfg.write_text(deployment(d, owners, rounds, mode, plan.frac_bits, tls, timeout, protocol, plan.norm_bound))
    config = load_config(cfg)  # a bound the check cannot serve fails here, in one line
    if tls:
        make_certs(config, folder / "certs")
    servers = [s for s in ("server-0", "server-1", "server-2") if s != down]
    names = (servers if secure else []) + ["model-owner"]
    swarm = owners > plan.swarm_above
    if not swarm:
        names += [f"data-owner-{i}" for i in range(owners)]
    _run_players(folder, cfg, names, swarm, programs, f"{mode} d={d} owners={owners}")
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
        "norm_failed": sum(metrics.get("norm_failed_rounds", {}).values()),
        "short": sum(1 for r in metrics["rounds"] if len(r.get("contributors", ())) < owners),
    }
    roles = _role_stats(folder)
    with np.load(folder / "model.npz") as f:
        theta = f["theta"]
    expected = -0.1 * rounds * synthetic_mean(config, owners)
    out: dict[str, Any] = {
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
    if mode == "secure-norm":
        out["norm_bound"] = plan.norm_bound
        out["largest_owner_norm"] = synthetic_norm(config, owners)
    return out


def synthetic_norm(config: Config, owners: int) -> float:
    """The largest L2 norm among the first ``owners`` synthetic gradients (model units)."""
    return max(float(np.linalg.norm(SyntheticOwner(config, p).gradient)) for p in config.data_owners[:owners])


def _run_players(
    folder: Path, cfg: Path, names: list[str], swarm: bool, programs: dict[str, tuple[str, ...]], what: str
) -> None:
    """Start every player (and the swarm), wait for all; AsyncMpcError if one fails (one started
    by another program may: a liar is excluded)."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    options = ["--config", str(cfg), "--log-level", "WARNING"]
    base = [*PLAYER, *options]
    try:
        for name in names:
            program = [*programs[name], *options] if name in programs else base
            argv = [*program, "--name", name, "--stats", str(folder / f"{name}.stats.json"), "--out", str(folder)]
            log = open(folder / f"{name}.log", "wb")  # noqa: SIM115
            procs[name] = subprocess.Popen(argv, stdout=log, stderr=log)
        if swarm:
            argv = [*base, "--swarm", "--stats", str(folder / "swarm.stats.json")]
            procs["swarm"] = subprocess.Popen(argv, stderr=open(folder / "swarm.log", "wb"))  # noqa: SIM115
        for name, proc in procs.items():
            if proc.wait(timeout=3600) != 0 and name not in programs:
                last = ((folder / f"{name}.log").read_text(errors="replace").strip().splitlines() or [""])[-1]
                raise AsyncMpcError(f"{what}: {name} exited with status {proc.returncode}: {last}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def _role_stats(folder: Path) -> dict[str, dict[str, Any]]:
    """The players' --stats files summed per role (peak RSS: the largest)."""
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
    return roles


def pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result for several launches of a configuration: round times pooled, the rest per launch
    averaged (bytes, CPU) or the maximum (peak RSS, error); the round kinds counted over all."""
    out = dict(runs[0])
    kinds = [r["round_kinds"] for r in runs]
    out["round_kinds"] = {
        key: sorted({s for k in kinds for s in k[key]}) if key == "excluded" else sum(k[key] for k in kinds)
        for key in kinds[0]
    }
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


def run_all(plan: Plan) -> list[dict[str, Any]]:
    """Launch every configuration of ``plan`` (``repeat`` times, modes alternating); one pooled
    result per configuration and mode, in order."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="asyncmpc-bench-") as tmp:
        for d in plan.ds:
            for owners in plan.owners:
                for tls in plan.tls:
                    launches: dict[str, list[dict[str, Any]]] = {mode: [] for mode in plan.modes}
                    for rep in range(plan.repeat):
                        for mode in plan.modes:
                            t0 = time.perf_counter()
                            r = run_one(Path(tmp) / str(rep), plan, d, owners, tls, mode)
                            r["wall_seconds"] = time.perf_counter() - t0
                            launches[mode].append(r)
                    pair = {mode: pooled(runs) for mode, runs in launches.items()}
                    results += pair.values()
                    if "secure" in pair and "plain" in pair:
                        ratio = pair["secure"]["round_seconds"]["median"] / pair["plain"]["round_seconds"]["median"]
                        pair["secure"]["secure_over_plain"] = ratio
                        pair["plain"]["secure_over_plain"] = ratio
                    if "secure" in pair and "secure-dp" in pair:
                        dp = pair["secure-dp"]["round_seconds"]["median"] / pair["secure"]["round_seconds"]["median"]
                        pair["secure-dp"]["dp_over_secure"] = dp
                    if "secure" in pair and "secure-norm" in pair:
                        checked, unchecked = pair["secure-norm"], pair["secure"]
                        time_ratio = checked["round_seconds"]["median"] / unchecked["round_seconds"]["median"]
                        up = "upload_per_owner_bytes_per_round"
                        checked["norm_over_secure"] = time_ratio
                        checked["norm_upload_over_secure"] = checked[up] / unchecked[up]
    return results


def table(results: list[dict[str, Any]]) -> list[str]:
    """The results as the lines of a table (and wall time per round for long runs)."""
    mib = 1 << 20
    lines = [
        f"{'mode':11} {'tls':>3} {'d':>9} {'owners':>6} {'median ms':>10} {'min ms':>8} {'max ms':>8} {'ratio':>6} "
        f"{'up/owner':>9} {'RSS MiB srv':>11} {'RSS MiB MO':>10} {'RSS MiB DO':>10} {'max err':>9} "
        f"{'disputed/mac':>12}"
    ]
    for r in results:
        rs, roles = r["round_seconds"], r["roles"]
        ratio = r.get("secure_over_plain")
        srv = roles.get("server", {}).get("peak_rss_bytes", 0) / mib
        lines.append(
            f"{r['mode']:11} {'on' if r['tls'] else 'off':>3} {r['d']:9d} {r['owners']:6d} "
            f"{rs['median'] * 1e3:10.2f} {rs['min'] * 1e3:8.2f} "
            f"{rs['max'] * 1e3:8.2f} {ratio if ratio is not None else float('nan'):6.2f} "
            f"{r['upload_per_owner_bytes_per_round'] / (8 * r['d']):8.3f}x {srv:11.0f} "
            f"{roles['model-owner']['peak_rss_bytes'] / mib:10.0f} {roles['data-owner']['peak_rss_bytes'] / mib:10.0f} "
            f"{r['max_abs_error_vs_exact_mean']:9.2e} "
            f"{r['round_kinds']['disputed']:>6}/{r['round_kinds']['mac']:<5}"
        )
        if "dp_over_secure" in r:
            lines.append(f"  noise inside the MPC: {r['dp_over_secure']:.2f} times the secure round without it")
        if r["mode"] == "secure-norm":
            k = r["round_kinds"]
            said = f"bound {r['norm_bound']:g}, the owners' norms at most {r['largest_owner_norm']:.1f}"
            said += f"; {k['norm_failed']} owner-rounds over the bound, {k['short']} rounds short of an owner"
            if "norm_over_secure" in r:
                said = (
                    f"{r['norm_over_secure']:.2f} times the secure round without it, "
                    f"upload {r['norm_upload_over_secure']:.2f} times; " + said
                )
            lines.append(f"  norm check: {said}")
        if r["wall_per_round"]:
            w = r["wall_per_round"]
            lines.append(
                f"  wall time per round: {w['first_100'] * 1e3:.2f} ms over the first 100, "
                f"{w['last_100'] * 1e3:.2f} ms over the last 100"
            )
    return lines
