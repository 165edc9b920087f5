#!/usr/bin/env python3
"""Train every combination of model, data set, split and local steps with a full local
deployment (``asyncmpc local``, every player a process) and compare with scikit-learn.

For each combination it writes a deployment file (three servers, three data owners, plaintext
loopback) and prints: final secure test accuracy, the pooled scikit-learn baseline for that
model (LogisticRegression, MLPClassifier of the same architecture), the unquantised plaintext
reference's accuracy, rounds, median seconds per round, bytes each data owner sent per round
(the statistics round included, averaged), and the first round whose test accuracy reaches 98%
of the final one, with the bytes an owner sent until then.

Usage: bench_training.py [--models logreg mlp] [--datasets breast_cancer digits]
                         [--splits iid dirichlet] [--local-steps 1 5] [--rounds 100] [--json]
"""

from __future__ import annotations

import argparse
import itertools
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

LEARNING_RATE = {"logreg": 0.1, "mlp": 0.01}
"""The model owner's Adam step size per model."""
LOCAL_RATE = 0.1
"""The data owners' plain SGD step size with local steps."""
OPTIONS = {"mlp": "[training.model_options]\nhidden_layers = [32]\n"}


def deployment(model: str, dataset: str, split: str, steps: int, rounds: int) -> str:
    lines = [
        'session = "bench-training"',
        "[protocol]",
        "plaintext = true",
        "[training]",
        f'dataset = "{dataset}"',
        f'model = "{model}"',
        f'split = "{split}"',
        f"rounds = {rounds}",
        f"learning_rate = {LEARNING_RATE.get(model, 0.05)}",
        f"local_steps = {steps}",
        f"local_learning_rate = {LOCAL_RATE}",
        OPTIONS.get(model, ""),
    ]
    return "\n".join(lines + loopback_players(3)) + "\n"


def run(model: str, dataset: str, split: str, steps: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="asyncmpc-training-") as tmp:
        cfg, out = Path(tmp) / "hosts.toml", Path(tmp) / "out"
        cfg.write_text(deployment(model, dataset, split, steps, rounds))
        argv = [sys.executable, "-m", "asyncmpc", "local", str(cfg), "--out", str(out)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"{model} {dataset} {split} {steps}: asyncmpc local failed:\n{proc.stderr[-2000:]}")
        metrics = json.loads((out / "metrics.json").read_text())
        sent = [json.loads((out / "logs" / f"data-owner-{i}.stats.json").read_text())["bytes_sent"] for i in range(3)]
        plain = ReferenceTrainer(load_config(cfg), quantize=False)
        plain_accuracy = plain.run().accuracy(plain.split.test)
    accuracies = [r["test_accuracy"] for r in metrics["rounds"]]
    final = metrics["final_test_accuracy"]
    reach = next(i + 1 for i, a in enumerate(accuracies) if a is not None and a >= 0.98 * final)
    per_round = statistics.mean(sent) / (len(accuracies) + 1)  # the statistics round too
    return {
        "model": model,
        "dataset": dataset,
        "split": split,
        "local_steps": steps,
        "rounds": len(accuracies),
        "secure_accuracy": final,
        "sklearn_pooled_accuracy": metrics["sklearn_pooled_accuracy"],
        "plaintext_reference_accuracy": plain_accuracy,
        "median_round_seconds": statistics.median(r["seconds"] for r in metrics["rounds"]),
        "bytes_per_owner_per_round": per_round,
        "rounds_to_98_percent": reach,
        "bytes_per_owner_to_98_percent": per_round * (reach + 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["logreg", "mlp"])
    ap.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits"])
    ap.add_argument("--splits", nargs="+", default=["iid", "dirichlet"])
    ap.add_argument("--local-steps", type=int, nargs="+", default=[1, 5])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    for model, dataset, split, steps in itertools.product(args.models, args.datasets, args.splits, args.local_steps):
        row = run(model, dataset, split, steps, args.rounds)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    if args.json:
        return
    print(
        f"{'model':7} {'dataset':13} {'split':9} {'E':>2} {'secure':>7} {'pooled':>7} {'plain':>7} {'rounds':>6} "
        f"{'s/round':>8} {'KB/owner/round':>14} {'to 98%':>6} {'KB to 98%':>9}"
    )
    for r in rows:
        print(
            f"{r['model']:7} {r['dataset']:13} {r['split']:9} {r['local_steps']:2d} {r['secure_accuracy']:7.4f} "
            f"{r['sklearn_pooled_accuracy']:7.4f} {r['plaintext_reference_accuracy']:7.4f} {r['rounds']:6d} "
            f"{r['median_round_seconds']:8.4f} {r['bytes_per_owner_per_round'] / 1e3:14.1f} "
            f"{r['rounds_to_98_percent']:6d} {r['bytes_per_owner_to_98_percent'] / 1e3:9.1f}"
        )


if __name__ == "__main__":
    main()
