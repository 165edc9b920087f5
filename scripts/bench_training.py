#!/usr/bin/env python3
"""Train on each bundled data set with a full local deployment and compare with scikit-learn.

For every data set it copies the deployment file (default hosts.toml) with that data set, runs
scripts/local.sh on it, and prints final test accuracy, the pooled scikit-learn baseline, the
unquantised plaintext reference's accuracy, median seconds per round and the wall time.
Usage: bench_training.py [--config hosts.toml] [--datasets breast_cancer digits wine iris] [--json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from asyncmpc.config import load_config  # noqa: E402
from asyncmpc.training import ReferenceTrainer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "hosts.toml"))
    ap.add_argument("--datasets", nargs="+", default=["breast_cancer", "digits", "wine", "iris"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    text = Path(args.config).read_text()
    rows = []
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = Path(tmp) / "hosts.toml"
            cfg.write_text(re.sub(r'(?m)^dataset = "[^"]*"', f'dataset = "{dataset}"', text))
            t0 = time.perf_counter()
            proc = subprocess.run(
                ["bash", str(ROOT / "scripts/local.sh"), str(cfg), "--out", str(Path(tmp) / "out")],
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.exit(f"{dataset}: local.sh failed:\n{proc.stderr}")
            metrics = json.loads((Path(tmp) / "out" / "metrics.json").read_text())
            plain = ReferenceTrainer(load_config(cfg), quantize=False)
            state = plain.run()
        rows.append(
            {
                "dataset": dataset,
                "rounds": len(metrics["rounds"]),
                "secure_accuracy": metrics["final_test_accuracy"],
                "sklearn_pooled_accuracy": metrics["sklearn_pooled_accuracy"],
                "plaintext_reference_accuracy": state.accuracy(plain.split.test),
                "median_round_seconds": statistics.median(r["seconds"] for r in metrics["rounds"]),
                "model_owner_seconds": metrics["wall_seconds"],
                "local_sh_seconds": wall,
            }
        )
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{'dataset':14} {'rounds':>6} {'secure':>7} {'sklearn':>7} {'plain':>7} {'s/round':>8} {'local.sh s':>10}")
    for r in rows:
        print(
            f"{r['dataset']:14} {r['rounds']:6d} {r['secure_accuracy']:7.4f} {r['sklearn_pooled_accuracy']:7.4f} "
            f"{r['plaintext_reference_accuracy']:7.4f} {r['median_round_seconds']:8.4f} {r['local_sh_seconds']:10.2f}"
        )


if __name__ == "__main__":
    main()
