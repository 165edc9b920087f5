#!/usr/bin/env python3
"""What the norm check's pieces cost: the wrap-around test for a compute server
(``crypto.projections``) and the proof of the squared norm (``crypto.flp``).

A server holds two of the three components of every owner's vector and projects each onto the
round's K ternary rows (one draw of the matrix for all owners). This times, in one process and
one run, interleaved: drawing the matrix and projecting ``--owners`` owners' two components
(``project``), against what a server does with them in an unchecked round's sum (adding the
components into the running sums: one pass per component); and, for one owner's vector of d
elements, the owner's time to prove its sum of squares and one server's queries on one part;
and the whole check of a round as it runs (``crypto.normproof``, bound ``--bound`` model units):
the owner's ``prove_input``, one server's ``open_components`` on its two components, and the
bytes an owner uploads with and without the check. The median of ``--repeat`` runs.

Usage: bench_normcheck.py [--d 10000 1000000] [--owners 3 10] [--k 48] [--bound 4] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from asyncmpc.crypto import goldilocks as gf
from asyncmpc.crypto.flp import Layout, prove, query
from asyncmpc.crypto.normproof import NormSpec, context_of, open_components, prove_input
from asyncmpc.crypto.prf import new_seed
from asyncmpc.crypto.projections import K, project


def _time(fn: object, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def measure(d: int, owners: int, k: int, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    parts = [rng.integers(-(2**63), 2**63, d, dtype=np.int64) for _ in range(2 * owners)]
    sums = [np.zeros(d, dtype=np.int64), np.zeros(d, dtype=np.int64)]

    def summed() -> None:
        for i, part in enumerate(parts):
            np.add(sums[i % 2], part, out=sums[i % 2])

    def projected() -> None:
        project(new_seed(), k, parts)

    summed()
    projected()  # warm up both
    return {"d": d, "owners": owners, "sum_ms": 1e3 * _time(summed, repeat), "check_ms": 1e3 * _time(projected, repeat)}


def measure_proof(d: int, repeat: int) -> dict[str, float]:
    x = gf.from_signed(np.random.default_rng(0).integers(-(2**20), 2**20, d))
    layout = Layout.of(d)
    blinds = gf.from_signed(np.random.default_rng(1).integers(-(2**63), 2**63, layout.wires))
    proof = prove(x, blinds)
    return {
        "d": d,
        "prove_ms": 1e3 * _time(lambda: prove(x, blinds), repeat),
        "query_ms": 1e3 * _time(lambda: query(layout, x, proof, 0, 123456789), repeat),
    }


def measure_round(d: int, bound: float, repeat: int) -> dict[str, float]:
    spec = NormSpec(round(bound * 2**16), d)
    v = np.random.default_rng(2).normal(size=d)
    x = gf.from_signed(np.rint(v / np.linalg.norm(v) * 0.9 * spec.bound).astype(np.int64))
    context = context_of("bench", 1, "owner", b"", spec)
    comps, digests = prove_input(spec, context, x)
    held = {0: comps[0], 1: comps[1]}
    return {
        "d": d,
        "owner_proves_ms": 1e3 * _time(lambda: prove_input(spec, context, x), repeat),
        "server_checks_ms": 1e3 * _time(lambda: open_components(spec, context, digests, held), repeat),
        # both sharings send two servers one vector each and seeds for the rest (4 of 16 bytes);
        # the check adds each component's norm part to both its servers, the digests and a signature
        "upload_unchecked_bytes": 2 * 8 * d + 4 * 16,
        "upload_checked_bytes": 2 * 8 * d + 4 * 16 + 3 * 2 * 8 * spec.payload_size + 3 * (9 * 32 + 72),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--d", type=int, nargs="+", default=[10_000, 1_000_000], help="vector lengths (default: 10^4 10^6)"
    )
    parser.add_argument("--owners", type=int, nargs="+", default=[3, 10], help="owners per round (default: 3 10)")
    parser.add_argument("--k", type=int, default=K, help=f"projections (default: {K})")
    parser.add_argument("--bound", type=float, default=4.0, help="norm bound, model units (default: 4)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure, median (default: 5)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args()
    for d in args.d:
        for owners in args.owners:
            row = measure(d, owners, args.k, args.repeat)
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"d = {d:>9,}, {owners:>3} owners: sum {row['sum_ms']:8.2f} ms, wrap-around projections "
                    f"{row['check_ms']:8.2f} ms ({args.k} rows, two components per owner)"
                )
        proof = measure_proof(d, args.repeat)
        if args.json:
            print(json.dumps(proof))
        else:
            print(
                f"d = {d:>9,}: the owner proves its sum of squares in {proof['prove_ms']:8.2f} ms, a server queries "
                f"one part in {proof['query_ms']:8.2f} ms"
            )
        full = measure_round(d, args.bound, args.repeat)
        if args.json:
            print(json.dumps(full))
        else:
            print(
                f"d = {d:>9,}: a norm-checked round: the owner proves in {full['owner_proves_ms']:8.1f} ms, a server "
                f"checks one owner in {full['server_checks_ms']:8.1f} ms; an owner uploads "
                f"{full['upload_unchecked_bytes']:,} bytes unchecked, {full['upload_checked_bytes']:,} checked"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
