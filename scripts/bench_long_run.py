#!/usr/bin/env python3
"""A long run: does any player's memory or the round time grow with the number of rounds?

Trains a bundled data set (breast_cancer by default: d = 31) for --rounds rounds, every player a
process on this machine (three servers, the model owner, --owners data owners; TLS unless
--plaintext), and samples every player's resident memory (VmRSS in /proc/PID/status, so Linux
only) every --every seconds into a CSV file (seconds since start, round, player, RSS in KiB).
At the end it reports, per player, the RSS at round --from and at the last sample before the
last round ended, the change between them and the largest RSS in between; the largest RSS
after training (the model owner writes metrics.json, model.npz and training.png then); the
peak RSS the player itself writes with --stats (start-up and end included); and the round
time per tenth of the run: the median of the rows' own ``seconds`` and the wall time per
round from their end times (checkpoint and log writes included).

With --norm-bound B (model units) every training round is norm-checked (``[protocol]
norm_bound``): each owner scales its update to fit B and proves it, and the servers leave out an
input over it. Every run reports, from the model owner's metrics.json, the final test accuracy
and whether any owner was ever left out: the rounds the check found each owner over the bound
(``norm_failed_rounds``), owners left out for inconsistent shares, and the rounds summed over
fewer than every owner.

    python scripts/bench_long_run.py --rounds 100000
    python scripts/bench_long_run.py --rounds 20000 --every 2 --out runs/long --json
    python scripts/bench_long_run.py --rounds 1000 --norm-bound 4
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.cli.benchmark import PLAYER, loopback_players  # noqa: E402
from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.learning.checkpoint import ROUND_LOG, iter_rounds  # noqa: E402
from asyncmpc.net.pki import make_certs  # noqa: E402


def deployment(dataset: str, rounds: int, owners: int, tls: bool, norm_bound: float = 0.0) -> str:
    """The hosts.toml of the run; ``norm_bound`` 0 leaves the norm check off."""
    lines = ['session = "long-run"']
    if tls:
        lines += ["[tls]", 'dir = "certs"']
    lines += ["[protocol]", f"plaintext = {'false' if tls else 'true'}", "connect_timeout = 60.0"]
    if norm_bound:
        lines += [f"norm_bound = {norm_bound!r}"]
    lines += ["[training]", f'dataset = "{dataset}"', f"rounds = {rounds}"]
    return "\n".join(lines + loopback_players(owners)) + "\n"


def rss_kib(pid: int) -> int | None:
    """The process's resident set size, or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def last_round(out: Path) -> int:
    """The round of the last complete row of the round log (0 before the first), read from its end."""
    try:
        with open(out / ROUND_LOG, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except FileNotFoundError:
        return 0
    for line in reversed(tail.split(b"\n")[1:-1] if size > 4096 else tail.split(b"\n")[:-1]):
        try:
            return int(json.loads(line)["round"])
        except (ValueError, KeyError):
            continue
    return 0


def sample(procs: dict[str, subprocess.Popen[bytes]], out: Path, csv_path: Path, every: float, rounds: int) -> None:
    """Sample every player's RSS until the model owner exits; a line on stderr each minute."""
    started = time.monotonic()
    shown = started
    with open(csv_path, "w", newline="") as fh:
        rows = csv.writer(fh)
        rows.writerow(["seconds", "round", "player", "rss_kib"])
        while procs["model-owner"].poll() is None:
            now, t = time.monotonic() - started, last_round(out)
            for name, proc in procs.items():
                kib = rss_kib(proc.pid)
                if kib is not None and proc.poll() is None:
                    rows.writerow([f"{now:.1f}", t, name, kib])
            fh.flush()
            if time.monotonic() - shown >= 60 and t:
                shown = time.monotonic()
                rate = t / now
                print(
                    f"{now / 60:.1f} min: round {t} ({rate:.0f} rounds/s; the {rounds} rounds in about "
                    f"{rounds / rate / 60:.0f} min)",
                    file=sys.stderr,
                )
            time.sleep(every)


def rss_report(csv_path: Path, start: int, end: int) -> dict[str, dict[str, Any]]:
    """Per player: RSS at the first sample from round ``start``, at the last sample before
    round ``end`` ended, the change between them and the largest RSS in between, and the
    largest RSS after it (None without a sample then)."""
    by_player: dict[str, list[tuple[int, int]]] = {}
    with open(csv_path, newline="") as fh:
        for r in csv.DictReader(fh):
            by_player.setdefault(r["player"], []).append((int(r["round"]), int(r["rss_kib"])))
    report = {}
    for name, samples in by_player.items():
        later = [(t, kib) for t, kib in samples if start <= t < end]
        after = [kib for t, kib in samples if t >= end]
        if not later:
            continue
        (t0, first), (t1, last) = later[0], later[-1]
        report[name] = {
            "round_from": t0,
            "rss_from_kib": first,
            "round_last": t1,
            "rss_last_kib": last,
            "change": (last - first) / first,
            "max_kib": max(kib for _, kib in later),
            "max_after_kib": max(after, default=None),
        }
    return report


def round_times(out: Path, parts: int = 10) -> list[dict[str, float]]:
    """Per tenth of the run: the median of the rows' ``seconds`` and the wall time per round."""
    secs: list[float] = []
    ends: list[float] = []
    for row in iter_rounds(out):
        secs.append(row["seconds"])
        ends.append(row["time"])
    n = len(secs)
    tenths = []
    for i in range(parts):
        lo, hi = i * n // parts, (i + 1) * n // parts
        if hi - lo < 2:
            continue
        tenths.append(
            {
                "first_round": lo + 1,
                "last_round": hi,
                "median_round_ms": 1e3 * statistics.median(secs[lo:hi]),
                "wall_per_round_ms": 1e3 * (ends[hi - 1] - ends[lo]) / (hi - 1 - lo),
            }
        )
    return tenths


def outcome(out: Path, owners: list[str]) -> dict[str, Any]:
    """From the model owner's metrics.json: the final test accuracy (and scikit-learn's on the
    pooled data), the rounds the norm check found each owner over the bound (None with the
    check off), owners left out for inconsistent shares, and the rounds summed over fewer than
    every owner."""
    metrics = json.loads((out / "metrics.json").read_text())
    short = sum(1 for row in iter_rounds(out) if len(row.get("contributors", ())) < len(owners))
    return {
        "final_test_accuracy": metrics.get("final_test_accuracy"),
        "sklearn_pooled_accuracy": metrics.get("sklearn_pooled_accuracy"),
        "norm_failed_rounds": metrics.get("norm_failed_rounds"),
        "left_out_owners": metrics.get("left_out_owners", []),
        "short_rounds": short,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100_000)
    ap.add_argument("--dataset", default="breast_cancer")
    ap.add_argument("--owners", type=int, default=3)
    ap.add_argument("--plaintext", action="store_true", help="no TLS (the default deployment uses TLS)")
    ap.add_argument(
        "--norm-bound", type=float, default=0.0, help="[protocol] norm_bound, model units (0: no norm check)"
    )
    ap.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples (5)")
    ap.add_argument("--from", dest="start", type=int, default=1000, help="the round RSS is compared from (1000)")
    ap.add_argument("--out", type=Path, help="the run folder, kept (default: a new temporary folder, kept)")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = ap.parse_args()

    folder = args.out or Path(tempfile.mkdtemp(prefix="asyncmpc-long-run-"))
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "hosts.toml"
    cfg.write_text(deployment(args.dataset, args.rounds, args.owners, not args.plaintext, args.norm_bound))
    config = load_config(cfg)  # a bound the check cannot serve fails here
    if not args.plaintext:
        make_certs(config, folder / "certs")
    out = folder / "out"
    names = ["server-0", "server-1", "server-2", "model-owner"] + [f"data-owner-{i}" for i in range(args.owners)]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    started = time.time()
    try:
        for name in names:
            argv = [*PLAYER, "--config", str(cfg), "--name", name, "--log-level", "WARNING"]
            argv += ["--stats", str(folder / f"{name}.stats.json")]
            if name == "model-owner":
                argv += ["--out", str(out), "--fresh"]
            with open(folder / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(argv, stdout=log, stderr=log)
        sample(procs, out, folder / "rss.csv", args.every, args.rounds)
        for name, proc in procs.items():
            if proc.wait(timeout=600) != 0:
                raise SystemExit(
                    f"bench_long_run: {name} exited with status {proc.returncode}; see {folder}/{name}.log"
                )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    wall = time.time() - started

    peaks = {n: json.loads((folder / f"{n}.stats.json").read_text())["peak_rss_bytes"] // 1024 for n in names}
    done = sum(1 for _ in iter_rounds(out))
    rss = rss_report(folder / "rss.csv", args.start, done)
    times = round_times(out)
    report = {
        "folder": str(folder),
        "rounds": done,
        "norm_bound": args.norm_bound,
        "wall_seconds": wall,
        "outcome": outcome(out, [p.name for p in config.data_owners]),
        "rss": rss,
        "peak_rss_kib": peaks,
        "round_times": times,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['rounds']} rounds of {args.dataset} in {wall / 60:.1f} min; run folder {folder}")
    o = report["outcome"]
    accuracy, pooled = o["final_test_accuracy"], o["sklearn_pooled_accuracy"]
    print(
        "final test accuracy "
        + ("-" if accuracy is None else f"{accuracy:.4f}")
        + ("" if pooled is None else f" (scikit-learn on the pooled data: {pooled:.4f})")
    )
    failed = o["norm_failed_rounds"]
    if failed is None:
        print("norm check off")
    else:
        over = ", ".join(f"{name} {n}" for name, n in failed.items() if n) or "none"
        print(f"norm check on, bound {args.norm_bound:g}: rounds an owner was over it and left out: {over}")
    print(
        f"owners left out for inconsistent shares: {', '.join(o['left_out_owners']) or 'none'}; "
        f"rounds short of an owner: {o['short_rounds']}"
    )
    head = ["round", "RSS MiB", "round", "RSS MiB", "change", "max", "after", "peak"]
    print(f"{'player':14} " + " ".join(f"{h:>8}" for h in head))
    for name in names:
        r = rss.get(name)
        if r is None:
            print(f"{name:14} no sample from round {args.start}")
            continue
        after = "-" if r["max_after_kib"] is None else f"{r['max_after_kib'] / 1024:.1f}"
        print(
            f"{name:14} {r['round_from']:8d} {r['rss_from_kib'] / 1024:8.1f} {r['round_last']:8d} "
            f"{r['rss_last_kib'] / 1024:8.1f} {100 * r['change']:+7.1f}% {r['max_kib'] / 1024:8.1f} "
            f"{after:>8} {peaks[name] / 1024:8.1f}"
        )
    print(f"{'rounds':>15} {'median round':>13} {'wall per round':>15}")
    for t in times:
        print(
            f"{t['first_round']:>7}-{t['last_round']:<7} {t['median_round_ms']:10.2f} ms "
            f"{t['wall_per_round_ms']:12.2f} ms"
        )


if __name__ == "__main__":
    main()
