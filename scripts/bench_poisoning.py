#!/usr/bin/env python3
"""What one poisoning data owner of five does to the trained model, with and without
``[protocol] norm_bound``.

For each data set, five data owners (an iid split; logistic regression, Adam 0.1, full
batches, ``clip_norm`` 100 and 100 rounds: the project's training defaults) and three
trainings with the same seed, split and initial weights, each a full local deployment (every
player a process on loopback, plaintext):

- **honest**: every owner honest, the bound off;
- **poisoned**: the first data owner runs as ``tests/players/attacker.py --poison scale:-1000``
  (``tests/poisoners.py``): every training contribution it shares is its honest one (clipped to
  ``clip_norm``) times -1000, scaled and sign-flipped, in every round; the bound off;
- **poisoned, bound B**: the same poisoner, ``norm_bound = B`` (``--bound``, model units). It
  shares its vector without scaling it to the bound, with a witness that claims a squared norm
  of B^2 / 4; the servers leave it out of the round and name it (``metrics.json``
  ``norm_failed_rounds``).

B bounds an owner's whole contribution (its gradient and its loss). Since the poisoner's
witness is false whatever its vector, it is left out at any B; B matters here to the honest
owners, whose contributions it would scale down. The default, 4, is above every contribution
the honest owners share in these runs (at most about 2.7, digits' first round; printed under
the table, from the same training in one process on the run's contributors), so it scales none.
A poisoner that scales its vector to fit B and proves it honestly is not measured here: its
input is accepted.

Prints, per data set and training: the final test accuracy, its difference to the honest run in
percentage points, and the rounds in which the poisoner was left out; under the table, the
largest norm of the contributions summed, and anything unexpected (an honest owner named over
the bound, disputed rounds). Each run's players log to a temporary folder; a player that fails
stops the benchmark with the last lines of its log.

Usage: bench_poisoning.py [--datasets breast_cancer digits] [--owners 5] [--rounds 100]
                          [--bound 4] [--poison scale:-1000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.cli.benchmark import PLAYER, loopback_players  # noqa: E402
from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.learning.training import ReferenceTrainer  # noqa: E402

ATTACKER = ROOT / "tests" / "players" / "attacker.py"
POISONER = "data-owner-0"
TIMEOUT = 1800.0
"""Seconds a player may run before the benchmark gives up on it."""
TRAININGS = ("honest", "poisoned", "poisoned, bound")
Floats = NDArray[np.float64]


def deployment(dataset: str, owners: int, rounds: int, seed: int, bound: float) -> str:
    lines = [
        'session = "bench-poisoning"',
        "[protocol]",
        "plaintext = true",
        f"norm_bound = {bound}",
        "[training]",
        f'dataset = "{dataset}"',
        f"rounds = {rounds}",
        f"seed = {seed}",
    ]
    return "\n".join(lines + loopback_players(owners)) + "\n"


def train(folder: Path, config: str, poison: str | None) -> dict[str, Any]:
    """Run every player of ``config`` as a process in ``folder``, ``POISONER`` as the attacker
    with ``--poison poison`` if given; the model owner's metrics.json and the seconds it took."""
    folder.mkdir(parents=True)
    cfg, out = folder / "hosts.toml", folder / "out"
    cfg.write_text(config)
    deployed = load_config(cfg)
    names = [p.name for p in deployed.servers] + [deployed.model_owner.name] + [p.name for p in deployed.data_owners]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    start = time.perf_counter()
    try:
        for name in names:
            program = (
                PLAYER if poison is None or name != POISONER else [sys.executable, str(ATTACKER), "--poison", poison]
            )
            argv = [*program, "--config", str(cfg), "--name", name, "--out", str(out), "--log-level", "WARNING"]
            with open(folder / f"{name}.log", "wb") as log:
                procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        for name, proc in procs.items():
            if proc.wait(timeout=TIMEOUT) != 0:
                last = (folder / f"{name}.log").read_text(errors="replace").strip().splitlines()[-5:]
                sys.exit(f"bench_poisoning: {name} exited with status {proc.returncode}:\n" + "\n".join(last))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    metrics["bench_seconds"] = time.perf_counter() - start
    return metrics


class _Measured(ReferenceTrainer):
    """The same training in one process, keeping the L2 norm of every contribution it sums
    (before ``norm_bound`` scales it down)."""

    def __init__(self, path: Path) -> None:
        super().__init__(load_config(path))
        self.norms: list[float] = []

    def _bounded(self, contribution: Floats) -> Floats:
        self.norms.append(float(np.linalg.norm(contribution)))
        return super()._bounded(contribution)


def largest_norm(cfg: Path, metrics: dict[str, Any]) -> float:
    """The largest L2 norm of a contribution summed in any round of the run of ``cfg`` that
    wrote ``metrics`` (its rounds' contributors), from the same training in one process."""
    trainer = _Measured(cfg)
    trainer.run([r["contributors"] for r in metrics["rounds"]], metrics["statistics_contributors"])
    return max(trainer.norms)


def spans(rounds: list[int]) -> str:
    """Increasing round numbers as runs: ``[1, 2, 3, 7]`` as ``1-3, 7``."""
    runs: list[list[int]] = []
    for r in rounds:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def measure(dataset: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The three trainings of ``dataset``, one row each."""
    rows: list[dict[str, Any]] = []
    for training in TRAININGS:
        bound = args.bound if training == "poisoned, bound" else 0.0
        poison = None if training == "honest" else args.poison
        folder = tmp / f"{dataset}-{len(rows)}"
        metrics = train(folder, deployment(dataset, args.owners, args.rounds, args.seed, bound), poison)
        left_out = [r["round"] for r in metrics["rounds"] if POISONER not in r["contributors"]]
        all_honest = poison is None or len(left_out) == len(metrics["rounds"])
        rows.append(
            {
                "dataset": dataset,
                "training": f"{training} {bound:g}" if bound else training,
                "poison": poison,
                "norm_bound": bound,
                "owners": args.owners,
                "rounds": len(metrics["rounds"]),
                "seed": args.seed,
                "final_test_accuracy": metrics["final_test_accuracy"],
                "poisoner_left_out_rounds": left_out,
                "norm_failed_rounds": metrics.get("norm_failed_rounds", {}),
                "disputed_rounds": len(metrics.get("disputed_rounds", [])),
                "largest_honest_norm": largest_norm(folder / "hosts.toml", metrics) if all_honest else None,
                "seconds": metrics["bench_seconds"],
            }
        )
        print(f"{dataset} {training}: {metrics['final_test_accuracy']:.4f}", file=sys.stderr, flush=True)
    for row in rows:
        row["points_vs_honest"] = 100 * (row["final_test_accuracy"] - rows[0]["final_test_accuracy"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits"])
    ap.add_argument("--owners", type=int, default=5, help="data owners, one of them the poisoner (default: 5)")
    ap.add_argument("--rounds", type=int, default=100, help="training rounds (default: 100)")
    ap.add_argument("--bound", type=float, default=4.0, help="norm_bound of the third training, model units (4)")
    ap.add_argument("--poison", default="scale:-1000", help="tests/poisoners.py's kind (default: scale:-1000)")
    ap.add_argument("--seed", type=int, default=0, help="[training] seed: split and initial weights (default: 0)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncmpc-poisoning-") as tmp:
        rows = [row for dataset in args.datasets for row in measure(dataset, args, Path(tmp))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{args.owners} data owners, {POISONER} poisoning ({args.poison}) every round; {args.rounds} rounds; "
        f"seed {args.seed}; bound B = {args.bound:g} model units; {time.perf_counter() - started:.0f} s in all"
    )
    print("| data set | training | final test accuracy | vs honest (points) | poisoner left out (rounds) |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        left_out = r["poisoner_left_out_rounds"]
        shown = f"{len(left_out)} of {r['rounds']} ({spans(left_out)})" if left_out else f"0 of {r['rounds']}"
        print(
            f"| {r['dataset']} | {r['training']} | {r['final_test_accuracy']:.4f} "
            f"| {r['points_vs_honest']:+.1f} | {shown} |"
        )
    for r in rows:
        if r["largest_honest_norm"] is not None:
            print(
                f"{r['dataset']} {r['training']}: the contributions summed had L2 norm at most "
                f"{r['largest_honest_norm']:.2f}"
            )
        named = r["norm_failed_rounds"].get(POISONER, 0)
        if r["norm_bound"] and named != len(r["poisoner_left_out_rounds"]):
            print(f"{r['dataset']} {r['training']}: the poisoner was named over the bound in {named} rounds")
        others = sum(n for owner, n in r["norm_failed_rounds"].items() if owner != POISONER)
        if others:
            print(f"{r['dataset']} {r['training']}: honest owners named over the bound in {others} owner-rounds")
        if r["disputed_rounds"]:
            print(f"{r['dataset']} {r['training']}: {r['disputed_rounds']} disputed rounds")


if __name__ == "__main__":
    main()
