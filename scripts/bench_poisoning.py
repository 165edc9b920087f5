#!/usr/bin/env python3
"""What one poisoning data owner of five does to the trained model, with and without
``[protocol] norm_bound``.

For each data set, five data owners (an iid split; logistic regression, Adam 0.1, full
batches, ``clip_norm`` 100 and 100 rounds: the project's training defaults) and these trainings,
all with the same seed, split and initial weights, each a full local deployment (every player a
process on loopback, plaintext):

- **honest**: every owner honest, the bound off;
- **poisoned**: the first data owner runs as ``tests/players/attacker.py --poison scale:-1000``
  (``tests/poisoners.py``): every training contribution it shares is its honest one (clipped to
  ``clip_norm``) times -1000, scaled and sign-flipped, in every round; the bound off;

and for each bound B of ``--bounds`` (model units; 4 and 2 by default):

- **honest, B**: every owner honest, ``norm_bound = B``: an owner whose contribution is over B
  scales it down to fit, which changes the honest run, so the rows at B are also compared with
  this one;
- **poisoned, B**: the same poisoner. It shares its vector without scaling it to the bound,
  with a witness that claims a squared norm of B^2 / 4; the servers leave it out of the round
  and name it (``metrics.json`` ``norm_failed_rounds``), at any B;
- **fitting poisoner, B**: ``--poison fit:-1000`` (``--fit``): its contribution times -1000,
  then scaled down to fit B and proved as an honest owner does. The check accepts it in every
  round: it pushes the model against the honest owners by B a round, which only a smaller B
  limits.

B bounds an owner's whole contribution (its gradient and its loss). At 4 it is above every
contribution the honest owners share (at most about 1.8 on breast_cancer and 2.7 on digits, in
the first rounds), so it scales none; 2 scales digits' first-round contributions down. Smaller
bounds (``--bounds 1 0.5``) scale more of the honest owners' first rounds.

Prints, per data set and training: the final test accuracy, its difference in percentage points
to the honest run and to the honest run at the same B, and the rounds in which the poisoner was
left out. Under the table, per training, the largest L2 norm of an honest owner's contribution
and how many of them the bound scaled down (from the same training replayed in one process on
the run's contributors, with the poisoner's contribution as it shared it), and anything
unexpected: an honest owner left out or named over the bound, disputed rounds, or a replay
whose accuracy is not the run's. Each run's players log to a temporary folder; a player that
fails stops the benchmark with the last lines of its log.

Usage: bench_poisoning.py [--datasets breast_cancer digits] [--owners 5] [--rounds 100]
                          [--bounds 4 2] [--poison scale:-1000] [--fit -1000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


class _Replay(ReferenceTrainer):
    """The same training in one process: the poisoner's contribution times ``factor`` (None:
    the poisoner is honest), then scaled to fit ``norm_bound`` as every one is. Keeps the L2
    norm of every honest owner's contribution summed (before the bound scales it down), and how
    many the bound scaled down."""

    def __init__(self, path: Path, factor: float | None) -> None:
        super().__init__(load_config(path))
        self.norms: list[float] = []
        self.clipped = 0
        names = [p.name for p in self.config.data_owners]
        for owner, name in zip(self.owners, names, strict=True):
            wrapped = self._watched(owner.contribution)
            if factor is not None and name == POISONER:
                wrapped = self._poisoned(owner.contribution, factor)
            owner.contribution = wrapped  # type: ignore[method-assign]

    def _poisoned(self, honest: Callable[..., Floats], factor: float) -> Callable[..., Floats]:
        return lambda *args: factor * honest(*args)

    def _watched(self, honest: Callable[..., Floats]) -> Callable[..., Floats]:
        def contribution(*args: Any) -> Floats:
            v = honest(*args)
            self.norms.append(float(np.linalg.norm(v)))
            self.clipped += int(not np.array_equal(self._bounded(v), v))
            return v

        return contribution


def replay(cfg: Path, metrics: dict[str, Any], poison: str | None) -> dict[str, Any] | None:
    """The run of ``cfg`` that wrote ``metrics`` replayed in one process on its rounds'
    contributors (``_Replay``): the honest owners' largest contribution norm, how many of their
    contributions the bound scaled down, and the final test accuracy. None for a poison other
    than ``scale:F`` or ``fit:F`` that some round summed."""
    contributors = [r["contributors"] for r in metrics["rounds"]]
    name, _, arg = (poison or "").partition(":")
    factor = float(arg) if name in ("scale", "fit") else None
    if poison is not None and factor is None and any(POISONER in c for c in contributors):
        return None
    trainer = _Replay(cfg, factor)
    state = trainer.run(contributors, metrics["statistics_contributors"])
    return {
        "largest_honest_norm": max(trainer.norms),
        "honest_clipped": trainer.clipped,
        "honest_contributions": len(trainer.norms),
        "replayed_accuracy": state.accuracy(trainer.split.test),
    }


def spans(rounds: list[int]) -> str:
    """Increasing round numbers as runs: ``[1, 2, 3, 7]`` as ``1-3, 7``."""
    runs: list[list[int]] = []
    for r in rounds:
        if runs and r == runs[-1][1] + 1:
            runs[-1][1] = r
        else:
            runs.append([r, r])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def trainings(args: argparse.Namespace) -> list[tuple[str, str | None, float]]:
    """Each training of a data set: its name, the poisoner's kind (None: every owner honest)
    and the bound (0: off)."""
    fit = f"fit:{args.fit:g}"
    out: list[tuple[str, str | None, float]] = [("honest", None, 0.0), ("poisoned", args.poison, 0.0)]
    for bound in args.bounds:
        out += [("honest", None, bound), ("poisoned", args.poison, bound), ("fitting poisoner", fit, bound)]
    return out


def measure(dataset: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The trainings of ``dataset``, one row each."""
    rows: list[dict[str, Any]] = []
    for training, poison, bound in trainings(args):
        folder = tmp / f"{dataset}-{len(rows)}"
        metrics = train(folder, deployment(dataset, args.owners, args.rounds, args.seed, bound), poison)
        honest = [p for p in load_config(folder / "hosts.toml").data_owners if poison is None or p.name != POISONER]
        rounds = metrics["rounds"]
        rows.append(
            {
                "dataset": dataset,
                "training": training,
                "poison": poison,
                "norm_bound": bound,
                "owners": args.owners,
                "rounds": len(rounds),
                "seed": args.seed,
                "final_test_accuracy": metrics["final_test_accuracy"],
                "poisoner_left_out_rounds": []
                if poison is None
                else [r["round"] for r in rounds if POISONER not in r["contributors"]],
                "honest_left_out": sum(p.name not in r["contributors"] for r in rounds for p in honest),
                "norm_failed_rounds": metrics.get("norm_failed_rounds", {}),
                "disputed_rounds": len(metrics.get("disputed_rounds", [])),
                "replay": replay(folder / "hosts.toml", metrics, poison),
                "seconds": metrics["bench_seconds"],
            }
        )
        where = f", bound {bound:g}" if bound else ""
        print(f"{dataset} {training}{where}: {metrics['final_test_accuracy']:.4f}", file=sys.stderr, flush=True)
    honest_at = {r["norm_bound"]: r["final_test_accuracy"] for r in rows if r["poison"] is None}
    for row in rows:
        row["points_vs_honest"] = 100 * (row["final_test_accuracy"] - honest_at[0.0])
        row["points_vs_honest_at_bound"] = 100 * (row["final_test_accuracy"] - honest_at[row["norm_bound"]])
    return rows


def notes(r: dict[str, Any]) -> list[str]:
    """The lines printed under the table for row ``r``."""
    out = []
    rep = r["replay"]
    if rep is not None:
        out.append(
            f"honest owners' contributions had L2 norm at most {rep['largest_honest_norm']:.2f}; the bound scaled "
            f"down {rep['honest_clipped']} of {rep['honest_contributions']}"
        )
        if rep["replayed_accuracy"] != r["final_test_accuracy"]:
            out.append(f"replayed in one process, the final test accuracy is {rep['replayed_accuracy']:.4f}")
    named = r["norm_failed_rounds"].get(POISONER, 0)
    if r["poison"] is not None and r["norm_bound"] and named != len(r["poisoner_left_out_rounds"]):
        out.append(f"the poisoner was named over the bound in {named} rounds")
    others = sum(n for owner, n in r["norm_failed_rounds"].items() if owner != POISONER or r["poison"] is None)
    if others:
        out.append(f"honest owners named over the bound in {others} owner-rounds")
    if r["honest_left_out"]:
        out.append(f"honest owners left out in {r['honest_left_out']} owner-rounds")
    if r["disputed_rounds"]:
        out.append(f"{r['disputed_rounds']} disputed rounds")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits"])
    ap.add_argument("--owners", type=int, default=5, help="data owners, one of them the poisoner (default: 5)")
    ap.add_argument("--rounds", type=int, default=100, help="training rounds (default: 100)")
    ap.add_argument(
        "--bounds", type=float, nargs="+", default=[4.0, 2.0], help="norm_bound of the bounded trainings (4 2)"
    )
    ap.add_argument("--poison", default="scale:-1000", help="tests/poisoners.py's kind (default: scale:-1000)")
    ap.add_argument("--fit", type=float, default=-1000.0, help="the fitting poisoner's factor F, fit:F (-1000)")
    ap.add_argument("--seed", type=int, default=0, help="[training] seed: split and initial weights (default: 0)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    if any(b <= 0 for b in args.bounds):
        ap.error("--bounds: each bound must be positive (a training without the bound is always run)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncmpc-poisoning-") as tmp:
        rows = [row for dataset in args.datasets for row in measure(dataset, args, Path(tmp))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{args.owners} data owners, {POISONER} poisoning every round: poisoned {args.poison}, fitting poisoner "
        f"fit:{args.fit:g}; {args.rounds} rounds; seed {args.seed}; B in model units; "
        f"{time.perf_counter() - started:.0f} s in all"
    )
    print(
        "| data set | training | B | final test accuracy | vs honest (points) | vs honest at B (points) "
        "| poisoner left out (rounds) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        left_out = r["poisoner_left_out_rounds"]
        if r["poison"] is None:
            shown = "-"
        else:
            shown = f"{len(left_out)} of {r['rounds']} ({spans(left_out)})" if left_out else f"0 of {r['rounds']}"
        bound = f"{r['norm_bound']:g}" if r["norm_bound"] else "off"
        print(
            f"| {r['dataset']} | {r['training']} | {bound} | {r['final_test_accuracy']:.4f} "
            f"| {r['points_vs_honest']:+.1f} | {r['points_vs_honest_at_bound']:+.1f} | {shown} |"
        )
    for r in rows:
        bound = f", B = {r['norm_bound']:g}" if r["norm_bound"] else ""
        for line in notes(r):
            print(f"{r['dataset']} {r['training']}{bound}: {line}")


if __name__ == "__main__":
    main()
