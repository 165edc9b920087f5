"""Test client: shares two random int64 vectors to three server processes and opens their sum.

One process speaks as three players of the deployment (model-owner, data-owner-0 and
data-owner-1), each over its own connections: the data owners share x and y, the model owner
runs the round, cross-checks and reconstructs. Writes x, y and the opened sum to an .npz file
for the test to compare, then tells the servers the session is finished. With ROUNDS and
``zeros``, the owners share zero vectors in ROUNDS rounds and every opened sum is written
(``totals``): under [privacy] they are the servers' noise alone.

Usage: sum_client.py CONFIG OUT.npz LENGTH [ROUNDS zeros]
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from asyncmpc.config import load_config
from asyncmpc.net.runtime import Node, run
from asyncmpc.protocol.aggregation import AggregationRound
from asyncmpc.protocol.events import Send
from asyncmpc.protocol.params import Params
from asyncmpc.protocol.shares import input_shares
from asyncmpc.roles.driver import drive_round, send_all
from asyncmpc.wire.messages import Finish


async def main(config_path: str, out: str, length: int, rounds: int = 1, zeros: bool = False) -> None:
    cfg = load_config(config_path)
    servers = [p.name for p in cfg.servers]
    owners = [p.name for p in cfg.data_owners[:2]]
    vectors = {
        o: np.zeros(length, dtype=np.int64) if zeros else np.frombuffer(os.urandom(8 * length), dtype=np.int64)
        for o in owners
    }
    totals, checked = [], []
    async with Node(cfg, cfg.model_owner.name) as mo, Node(cfg, owners[0]) as d0, Node(cfg, owners[1]) as d1:
        await asyncio.gather(mo.connect(servers), d0.connect(servers), d1.connect(servers))
        for round_no in range(1, rounds + 1):
            rnd = AggregationRound(Params.of(cfg), round_no, tuple(owners), (length,))
            result, *_ = await asyncio.gather(
                drive_round(mo, rnd),
                send_all(d0, input_shares(Params.of(cfg), round_no, vectors[owners[0]])),
                send_all(d1, input_shares(Params.of(cfg), round_no, vectors[owners[1]])),
            )
            if result.total is None:
                sys.exit(f"round {round_no} yielded nothing: {result.reason}")
            totals.append(result.total)
            checked.append(result.cross_checked)
        await send_all(mo, [Send(s, Finish(session=cfg.session)) for s in servers])
    np.savez(
        out,
        x=vectors[owners[0]],
        y=vectors[owners[1]],
        total=totals[0],
        totals=np.array(totals),
        cross_checked=all(checked),
    )


if __name__ == "__main__":
    plaintext = load_config(sys.argv[1]).protocol.plaintext
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    zeros = len(sys.argv) > 5 and sys.argv[5] == "zeros"
    run(lambda: main(sys.argv[1], sys.argv[2], int(sys.argv[3]), rounds, zeros), uvloop_ok=plaintext)
