#!/usr/bin/env python3
"""What differential privacy inside the secure sum costs in accuracy.

For each data set and epsilon (example-level, delta 1e-5) it trains:
- **secure DP**: a full local deployment (``asyncmpc local``, every player a process) with
  ``[privacy]``: the three servers deal Skellam noise inside the secure sum;
- **central DP**: the same training in one process (``ReferenceTrainer``, no fixed point) with
  Gaussian noise added to the sum in the clear, (a) of the variance the accountant needs
  (sigma^2: central DP at the same epsilon) and (b) of the variance the secure run's opened
  sum carries (1.5 sigma^2, since each of the three servers deals sigma^2 / 2 so that the
  guarantee holds against the model owner with one server's help);
- **non-private secure**: the same deployment without ``[privacy]`` (full batches, the
  secure statistics round).

The secure runs repeat for each ``--seeds`` seed (the split and initial weights); the central
runs repeat ``--central-repeats`` times per seed. Sampling and noise are drawn from secure
randomness, so repeats differ. Prints mean +- standard deviation of the final test accuracy.

Usage: bench_privacy.py [--datasets breast_cancer digits] [--epsilons 1 3 8] [--seeds 0 1 2]
                        [--central-repeats 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.cli.benchmark import loopback_players  # noqa: E402
from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.learning.training import ReferenceTrainer  # noqa: E402

SETTINGS = {
    "breast_cancer": {"rounds": 60, "learning_rate": 0.1, "sampling_rate": 0.2},
    "digits": {"rounds": 100, "learning_rate": 0.05, "sampling_rate": 0.1},
}
"""Per data set: rounds, the model owner's Adam step size, the Poisson sampling rate."""
CLIP, DELTA = 1.0, 1e-5


def deployment(dataset: str, seed: int, epsilon: float | None) -> str:
    s = SETTINGS[dataset]
    lines = [
        'session = "bench-privacy"',
        "[protocol]",
        "plaintext = true",
        "[training]",
        f'dataset = "{dataset}"',
        f"rounds = {s['rounds']}",
        f"learning_rate = {s['learning_rate']}",
        f"seed = {seed}",
    ]
    if epsilon is not None:
        lines += [
            "[privacy]",
            'unit = "example"',
            f"epsilon = {epsilon}",
            f"delta = {DELTA}",
            f"clip = {CLIP}",
            f"sampling_rate = {s['sampling_rate']}",
        ]
    return "\n".join(lines + loopback_players(3)) + "\n"


def secure(dataset: str, seed: int, epsilon: float | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="asyncmpc-privacy-") as tmp:
        cfg, out = Path(tmp) / "hosts.toml", Path(tmp) / "out"
        cfg.write_text(deployment(dataset, seed, epsilon))
        argv = [sys.executable, "-m", "asyncmpc", "local", str(cfg), "--out", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"{dataset} seed {seed} epsilon {epsilon}: asyncmpc local failed:\n{proc.stderr[-2000:]}")
        return json.loads((out / "metrics.json").read_text())  # type: ignore[no-any-return]


def central(dataset: str, seed: int, epsilon: float, noise: float) -> float:
    with tempfile.TemporaryDirectory(prefix="asyncmpc-privacy-") as tmp:
        cfg = Path(tmp) / "hosts.toml"
        cfg.write_text(deployment(dataset, seed, epsilon))
        trainer = ReferenceTrainer(load_config(cfg), quantize=False, central_noise=noise)
        accuracy = trainer.run().accuracy(trainer.split.test)
    assert accuracy is not None
    return accuracy


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--central-repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()

    rows = []
    for dataset in args.datasets:
        plain = [secure(dataset, seed, None)["final_test_accuracy"] for seed in args.seeds]
        for epsilon in args.epsilons:
            runs = [secure(dataset, seed, epsilon) for seed in args.seeds]
            reps = [seed for seed in args.seeds for _ in range(args.central_repeats)]
            rows.append(
                {
                    "dataset": dataset,
                    "epsilon": epsilon,
                    "delta": DELTA,
                    "rounds": SETTINGS[dataset]["rounds"],
                    "sampling_rate": SETTINGS[dataset]["sampling_rate"],
                    "noise_multiplier": runs[0]["privacy"]["noise_multiplier"],
                    "epsilon_spent": max(r["privacy"]["epsilon"] for r in runs),
                    "secure_dp": [r["final_test_accuracy"] for r in runs],
                    "central_dp_same_epsilon": [central(dataset, s, epsilon, 1.0) for s in reps],
                    "central_dp_same_noise": [central(dataset, s, epsilon, 1.5) for s in reps],
                    "secure_non_private": plain,
                }
            )
            print(f"{dataset} epsilon {epsilon}: done", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"seeds {args.seeds}; central runs {args.central_repeats} per seed; delta {DELTA}; clip {CLIP}")
    print(
        "| data set | epsilon | noise multiplier | rounds | q | secure DP | central DP, same epsilon "
        "| central DP, same noise | secure, no DP |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['epsilon']:g} | {r['noise_multiplier']:.3f} | {r['rounds']} "
            f"| {r['sampling_rate']:g} | {spread(r['secure_dp'])} | {spread(r['central_dp_same_epsilon'])} "
            f"| {spread(r['central_dp_same_noise'])} | {spread(r['secure_non_private'])} |"
        )


if __name__ == "__main__":
    main()
