"""The model owner's memory does not grow with the number of rounds: its rows stay on disk.

A deployment in one event loop (the real roles over the in-process transport) trains the
plaintext floor (``aggregation = "plain"``: no servers, so a few hundred rounds take seconds;
the model owner's rows, checkpoints and metrics are the same code as in secure rounds). The
progress hook, called after every round, starts tracemalloc part-way and takes snapshots of
what is still allocated from the model owner's code (``roles/model_owner.py`` or
``roles/rounds.py`` on the allocation's stack) at two later rounds. Keeping every round's row
for metrics.json, as the model owner once did, held about 400 bytes more per round here.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tracemalloc
from pathlib import Path
from typing import Any

from asyncmpc.config import Config, parse_config
from asyncmpc.learning.checkpoint import ROUND_LOG, RoundLog, read_rounds
from asyncmpc.net.memory import Hub
from asyncmpc.roles.data_owner import run_data_owner
from asyncmpc.roles.model_owner import run_model_owner
from tests.helpers import hosts_toml

TRACE_FROM, FIRST, LAST = 20, 50, 200
"""Rounds at which tracing starts, and the two snapshots compared."""
MODEL_OWNER = [
    tracemalloc.Filter(True, "*/asyncmpc/roles/model_owner.py", all_frames=True),
    tracemalloc.Filter(True, "*/asyncmpc/roles/rounds.py", all_frames=True),
]


class _Probe:
    """A model owner's progress display that measures instead of showing."""

    def __init__(self) -> None:
        self.seen = 0
        self.held: dict[int, int] = {}
        """Bytes still allocated from the model owner's code, at rounds FIRST and LAST."""

    def start(self, total: int, done: int) -> None:
        pass

    def round(self, row: dict[str, Any]) -> bool:
        self.seen += 1
        if self.seen == TRACE_FROM:
            tracemalloc.start(12)
        if self.seen in (FIRST, LAST):
            gc.collect()
            snapshot = tracemalloc.take_snapshot().filter_traces(MODEL_OWNER)
            self.held[self.seen] = sum(s.size for s in snapshot.statistics("filename"))
        return True

    def close(self) -> None:
        tracemalloc.stop()


async def _train(config: Config, out: Path, probe: _Probe) -> dict[str, Any]:
    hub = Hub(config)
    owners = [asyncio.create_task(run_data_owner(config, p.name, opener=hub.open)) for p in config.data_owners]
    try:
        metrics = await run_model_owner(config, "model-owner", out, opener=hub.open, progress=probe)
        await asyncio.gather(*owners)  # they exit on Finish
    finally:
        for task in owners:
            task.cancel()
        await asyncio.gather(*owners, return_exceptions=True)
    return metrics


def test_the_model_owner_holds_no_more_memory_after_more_rounds_and_loses_no_row(tmp_path: Path) -> None:
    training = f'dataset = "synthetic"\nparameters = 31\naggregation = "plain"\nrounds = {LAST}'
    config = parse_config(hosts_toml(3, training=training), "hosts.toml")
    probe = _Probe()
    metrics = asyncio.run(_train(config, tmp_path, probe))

    growth = probe.held[LAST] - probe.held[FIRST]
    rounds = LAST - FIRST
    assert growth < 60 * rounds, f"{growth} bytes more after {rounds} more rounds: {probe.held}"
    # nothing lost: the rows are on disk, in metrics.jsonl and in metrics.json alike
    assert isinstance(metrics["rounds"], RoundLog) and len(metrics["rounds"]) == LAST
    rows = read_rounds(tmp_path)
    assert [r["round"] for r in rows] == list(range(1, LAST + 1))
    assert list(metrics["rounds"]) == rows and metrics["rounds"][-1] == rows[-1]
    assert json.loads((tmp_path / "metrics.json").read_text())["rounds"] == rows
    assert (tmp_path / ROUND_LOG).exists()
