#!/usr/bin/env python3
"""What differential privacy inside the secure sum costs in accuracy.

For each data set and epsilon (example-level, delta 1e-5) it trains:
- **secure DP**: a full local deployment (``asyncmpc local``, every player a process) with
  ``[privacy]``: the three servers deal Skellam noise inside the secure sum, of the noise
  multiplier z whose *proven* epsilon (``SkellamAccountant``) is the target: sigma = z times
  the sensitivity in fixed-point units (``plan_for``);
- **central DP**: the same training in one process (``ReferenceTrainer``, no fixed point) with
  Gaussian noise added to the sum in the clear, (a) of standard deviation z_G * clip, z_G being
  the noise multiplier dp-accounting's accountant of the Poisson-subsampled Gaussian mechanism
  needs for the same (epsilon, delta), rounds and sampling rate (``noise_multiplier_for``): what
  a central-DP system that adds Gaussian noise runs at the same epsilon; and (b) of the variance
  the secure run's opened sum carries (1.5 sigma^2, since each of the three servers deals
  sigma^2 / 2 so that the guarantee holds against the model owner with one server's help);
- **non-private secure**: the same deployment without ``[privacy]`` (full batches, the
  secure statistics round).

The secure runs repeat for each ``--seeds`` seed (the split and initial weights); the central
runs repeat ``--central-repeats`` times per seed. Sampling and noise are drawn from secure
randomness, so repeats differ. Prints mean +- standard deviation of the final test accuracy,
and flags a secure run with a round that lacks an owner (one that declined, say because its own
ledger was spent: each run's ledgers live in its own temporary folder, beside its hosts.toml).

``--answer-time``: instead, a data owner's time to compute its contribution
(``OwnerWork.contribution``) when nothing is sampled (rate 1e-9) and when everything is (rate 1),
at example and at owner level: the median of ``--calls`` calls each, interleaved.

Usage: bench_privacy.py [--datasets breast_cancer digits] [--epsilons 1 3 8] [--seeds 0 1 2]
                        [--central-repeats 5] [--json] [--answer-time [--calls 50]]
"""

from __future__ import annotations

import argparse
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

from asyncmpc.cli.benchmark import loopback_players  # noqa: E402
from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.learning.privacy.accountant import noise_multiplier_for  # noqa: E402
from asyncmpc.learning.privacy.plan import plan_for  # noqa: E402
from asyncmpc.learning.training import ReferenceTrainer  # noqa: E402

SETTINGS = {
    "breast_cancer": {"rounds": 60, "learning_rate": 0.1, "sampling_rate": 0.2},
    "digits": {"rounds": 100, "learning_rate": 0.05, "sampling_rate": 0.1},
}
"""Per data set: rounds, the model owner's Adam step size, the Poisson sampling rate."""
CLIP, DELTA = 1.0, 1e-5


TREE_LEARNING_RATE = 0.1
"""DP-FTRL's step: SGD with momentum 0.9 on the noisy increments (FTRL on the prefix sums)."""


def deployment(
    dataset: str,
    seed: int,
    epsilon: float | None,
    unit: str = "example",
    rate: float | None = None,
    tree: bool = False,
) -> str:
    s = SETTINGS[dataset]
    rate = s["sampling_rate"] if rate is None else rate
    lines = [
        'session = "bench-privacy"',
        "[protocol]",
        "plaintext = true",
        "[training]",
        f'dataset = "{dataset}"',
        f"rounds = {s['rounds']}",
        f"learning_rate = {TREE_LEARNING_RATE if tree else s['learning_rate']}",
        f"seed = {seed}",
    ]
    if tree:
        lines.append('optimizer = "sgd"')
    if epsilon is not None:
        lines += ["[privacy]", f'unit = "{unit}"', f"epsilon = {epsilon}", f"delta = {DELTA}", f"clip = {CLIP}"]
        if tree:  # an epoch of 1 / rate rounds: every example once, as often as the sampled runs on average
            lines += ['mechanism = "tree"', f"epoch_steps = {round(1 / rate)}"]
        else:
            lines.append(f"sampling_rate = {rate!r}")
    return "\n".join(lines + loopback_players(3)) + "\n"


def secure(dataset: str, seed: int, epsilon: float | None, tree: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="asyncmpc-privacy-") as tmp:
        cfg, out = Path(tmp) / "hosts.toml", Path(tmp) / "out"
        cfg.write_text(deployment(dataset, seed, epsilon, tree=tree))
        argv = [sys.executable, "-m", "asyncmpc", "local", str(cfg), "--out", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"{dataset} seed {seed} epsilon {epsilon}: asyncmpc local failed:\n{proc.stderr[-2000:]}")
        metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
        ledgers = len(list((Path(tmp) / "privacy-ledger").glob("*.json")))
    owners = metrics["data_owners"]
    short = [r["round"] for r in metrics["rounds"] if len(r["contributors"]) < owners]
    problems = [f"rounds without every owner: {short}"] if short else []
    problems += [metrics["stopped"]] if "stopped" in metrics else []
    if epsilon is not None and ledgers != owners:
        problems.append(f"{ledgers} owner ledgers in the run's folder, not {owners}")
    for problem in problems:
        print(f"{dataset} seed {seed} epsilon {epsilon}: {problem}", file=sys.stderr)
    metrics["problems"] = problems
    return metrics


def multipliers(dataset: str, epsilon: float) -> tuple[float, float, float]:
    """The proven noise multiplier the secure run calibrates to, the Gaussian one a central-DP
    system calibrates to at the same (epsilon, delta), and the ``central_noise`` that gives
    the latter's variance, (z_G * clip)^2, as a multiple of the plan's sigma^2."""
    with tempfile.TemporaryDirectory(prefix="asyncmpc-privacy-") as tmp:
        cfg = Path(tmp) / "hosts.toml"
        cfg.write_text(deployment(dataset, 0, epsilon))
        config = load_config(cfg)
        size = ReferenceTrainer(config, quantize=False).state.model.size
    plan = plan_for(config, size)
    gaussian = noise_multiplier_for(epsilon, DELTA, config.training.rounds, plan.sampling_rate)
    std = plan.sigma * 2.0**-config.protocol.frac_bits  # the plan's, in the units of the sum
    return plan.noise_multiplier, gaussian, (gaussian * CLIP / std) ** 2


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


def answer_times(datasets: list[str], calls: int) -> None:
    """Print the median time of the first data owner's contribution with nothing sampled and
    with everything sampled, at example and at owner level (the same work either way)."""
    print(f"median of {calls} calls each, interleaved; the first data owner; ms")
    print("| data set | unit | examples | nothing sampled | all sampled | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for dataset in datasets:
        for unit in ("example", "owner"):
            trainers = []
            for rate in (1e-9, 1.0):
                with tempfile.TemporaryDirectory(prefix="asyncmpc-privacy-") as tmp:
                    cfg = Path(tmp) / "hosts.toml"
                    cfg.write_text(deployment(dataset, 0, 1.0, unit, rate))
                    trainers.append(ReferenceTrainer(load_config(cfg), quantize=False))
            st, test = trainers[0].state, trainers[0].split.test
            assert test is not None
            st.scale_like(test.x)
            works = [t.owners[0] for t in trainers]
            times: list[list[float]] = [[], []]
            for call in range(calls + 1):  # the first call of each warms up
                for i in (0, 1) if call % 2 else (1, 0):
                    start = time.perf_counter()
                    works[i].contribution(st.theta, st.mean, st.scale, call + 1)
                    if call:
                        times[i].append(time.perf_counter() - start)
            none, every = (1e3 * statistics.median(t) for t in times)
            print(f"| {dataset} | {unit} | {len(works[0].data.y)} | {none:.3f} | {every:.3f} | {every / none:.3f} |")


def trees(datasets: list[str], epsilons: list[float], seeds: list[int]) -> None:
    """Secure DP-FTRL at the same (epsilon, delta), rounds and data: an epoch of 1 / rate
    rounds, SGD with momentum (``TREE_LEARNING_RATE``)."""
    print("| data set | epsilon | noise multiplier (tree) | epoch_steps | secure DP-FTRL | epsilon spent |")
    print("| --- | --- | --- | --- | --- | --- |")
    for dataset in datasets:
        for epsilon in epsilons:
            runs = [secure(dataset, seed, epsilon, tree=True) for seed in seeds]
            z = runs[0]["privacy"]["noise_multiplier"]
            steps = round(1 / SETTINGS[dataset]["sampling_rate"])
            spent = max(r["privacy"]["epsilon"] for r in runs)
            accuracy = spread([r["final_test_accuracy"] for r in runs])
            print(f"| {dataset} | {epsilon:g} | {z:.3f} | {steps} | {accuracy} | {spent:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--epsilons", nargs="+", type=float, default=[1.0, 3.0, 8.0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--central-repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("--answer-time", action="store_true", help="time a data owner's answer instead (see above)")
    ap.add_argument("--calls", type=int, default=50, help="--answer-time: calls per sampling rate")
    ap.add_argument("--tree", action="store_true", help='secure DP-FTRL ([privacy] mechanism = "tree") only')
    args = ap.parse_args()
    if args.answer_time:
        answer_times(args.datasets, args.calls)
        return
    if args.tree:
        trees(args.datasets, args.epsilons, args.seeds)
        return

    rows = []
    for dataset in args.datasets:
        plain = [secure(dataset, seed, None)["final_test_accuracy"] for seed in args.seeds]
        for epsilon in args.epsilons:
            runs = [secure(dataset, seed, epsilon) for seed in args.seeds]
            reps = [seed for seed in args.seeds for _ in range(args.central_repeats)]
            proven, gaussian, same_epsilon = multipliers(dataset, epsilon)
            if any(abs(r["privacy"]["noise_multiplier"] - proven) > 1e-9 * proven for r in runs):
                sys.exit(f"{dataset} epsilon {epsilon}: the secure runs' noise multiplier is not {proven}")
            rows.append(
                {
                    "dataset": dataset,
                    "epsilon": epsilon,
                    "delta": DELTA,
                    "rounds": SETTINGS[dataset]["rounds"],
                    "sampling_rate": SETTINGS[dataset]["sampling_rate"],
                    "noise_multiplier": proven,
                    "gaussian_noise_multiplier": gaussian,
                    "epsilon_spent": max(r["privacy"]["epsilon"] for r in runs),
                    "gaussian_epsilon_spent": max(r["privacy"]["gaussian_epsilon"] for r in runs),
                    "problems": [p for r in runs for p in r["problems"]],
                    "secure_dp": [r["final_test_accuracy"] for r in runs],
                    "central_dp_same_epsilon": [central(dataset, s, epsilon, same_epsilon) for s in reps],
                    "central_dp_same_noise": [central(dataset, s, epsilon, 1.5) for s in reps],
                    "secure_non_private": plain,
                }
            )
            print(f"{dataset} epsilon {epsilon}: done", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"seeds {args.seeds}; central runs {args.central_repeats} per seed; delta {DELTA}; clip {CLIP}")
    print("noise multiplier: proven (secure DP) / Gaussian (central DP, same epsilon)")
    print(
        "| data set | epsilon | noise multiplier | rounds | q | secure DP | central DP, same epsilon "
        "| central DP, same noise | secure, no DP |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['epsilon']:g} | {r['noise_multiplier']:.3f} / {r['gaussian_noise_multiplier']:.3f} "
            f"| {r['rounds']} | {r['sampling_rate']:g} | {spread(r['secure_dp'])} "
            f"| {spread(r['central_dp_same_epsilon'])} | {spread(r['central_dp_same_noise'])} "
            f"| {spread(r['secure_non_private'])} |"
        )
    for r in rows:
        for problem in r["problems"]:
            print(f"{r['dataset']} epsilon {r['epsilon']:g}: {problem}")


if __name__ == "__main__":
    main()
