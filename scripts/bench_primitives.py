#!/usr/bin/env python3
"""Throughput of the arithmetic primitives at n elements (default 10^6), in elements per second.

Prints one line per primitive: median time over --repeat runs and elements/s, beside a plain
numpy add of the same arrays (the floor every ring operation is measured against).
Usage: bench_primitives.py [--n 1000000] [--repeat 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncmpc.cli.run import tune_allocator
from asyncmpc.crypto import macs, rss
from asyncmpc.crypto.prf import add_keystreams, expand_into, new_seed
from asyncmpc.learning.privacy.noise import secure_generator, skellam
from asyncmpc.protocol.noise import deal


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tune_allocator()  # as every player process does
    n = args.n
    x = np.frombuffer(os.urandom(8 * n), dtype=np.int64)
    y = np.frombuffer(os.urandom(8 * n), dtype=np.int64)
    out = np.empty(n, dtype=np.int64)
    seed = new_seed()
    shares = rss.share(x)
    seeded = rss.share_seeded(x)
    sharer = rss.InputSharer()
    reals = np.random.default_rng(0).uniform(-1.0, 1.0, n)  # benchmark input, not share randomness
    seeds = [new_seed() for _ in range(10)]
    acc = np.zeros(n, dtype=np.int64)
    small = x >> 8  # fixed-point values are far below 2^60
    key = macs.MacKey.new()
    tags = macs.tag(small, key)

    noise_rng = secure_generator()
    drawn = skellam(2.0**34, n, noise_rng)  # noise multiplier 1, clip 1, 16 fractional bits

    def noise_into_sums() -> object:
        rnd = deal(0, frozenset({0, 1, 2}), (n,), lambda k, shape: drawn)
        rnd.receive(2, rss.Seed(new_seed()), "server-2")  # the previous server's seed
        rnd.receive(1, y, "server-1")  # the next server's masked vector
        rnd.apply([acc, out])
        return rnd.owed

    def online_share() -> object:
        sharer.prepare(x.shape)  # (a data owner does this while it waits; timed separately below)
        return sharer.share(x)

    def online_share_reals() -> object:
        sharer.prepare(x.shape)
        return sharer.share_reals(reals, 16, max_terms=1000)

    cases: dict[str, Callable[[], object]] = {
        "numpy add (floor)": lambda: np.add(x, y, out=out),
        "seed expansion (AES counter mode, reused buffer)": lambda: expand_into(seed, out),
        "10 streams added into a sum (a server, blocked)": lambda: add_keystreams(acc, seeds),
        "share_seeded (what a data owner computes)": lambda: rss.share_seeded(x),
        "InputSharer.prepare (masks, before the input)": lambda: sharer.prepare(x.shape),
        "prepare + share (share alone is one subtraction)": online_share,
        "prepare + share_reals (encode and mask, one pass)": online_share_reals,
        "share (all components as vectors)": lambda: rss.share(x),
        "reconstruct (two servers)": lambda: rss.reconstruct(shares[:2]),
        "share + reconstruct": lambda: rss.reconstruct(rss.share(x)[:2]),
        "server materialize seeded share": lambda: rss.materialize(seeded[0].a, x.shape),
        "field MAC tag <r, x> mod 2^61-1 (an owner)": lambda: macs.tag(small, key),
        "field MAC check of a sum (the model owner)": lambda: macs.verify(small, key, tags),
        "Skellam noise draw, variance 2^34 (a server, per round)": lambda: skellam(2.0**34, n, noise_rng),
        "deal drawn noise + add every part (a server)": noise_into_sums,
    }
    rows = []
    for name, fn in cases.items():
        sec = timed(fn, args.repeat)
        rows.append({"primitive": name, "n": n, "seconds": sec, "elements_per_s": n / sec})
    floor = rows[0]["seconds"]
    if args.json:
        for row in rows:
            print(json.dumps(row | {"x_numpy_add": row["seconds"] / floor}))
        return
    print(f"n = {n:,} int64 elements, median of {args.repeat}")
    print(f"{'primitive':56} {'ms':>9} {'elements/s':>12} {'x add':>7}")
    for row in rows:
        print(
            f"{row['primitive']:56} {row['seconds'] * 1e3:9.3f} {row['elements_per_s']:12.3e} "
            f"{row['seconds'] / floor:7.1f}"
        )


if __name__ == "__main__":
    main()
