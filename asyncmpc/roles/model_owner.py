"""Layer 6: the model owner process: runs the rounds, holds the model, sees only the aggregate.

With a data set, round 1 gathers the global feature statistics and training round t runs as
protocol round t + 1. After every round it checkpoints ``model.npz`` and ``metrics.json`` in the
output folder. With ``aggregation = "plain"`` (synthetic benchmarks only) data owners send their
gradients straight here: the plaintext floor that secure aggregation is measured against.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from asyncmpc.config import Config
from asyncmpc.errors import PeerLost, RemoteProtocolError
from asyncmpc.net.runtime import Node
from asyncmpc.protocol.aggregation import AggregationRound, RoundResult
from asyncmpc.protocol.events import Send
from asyncmpc.roles.driver import drive_round, send_all
from asyncmpc.tls import TlsContexts
from asyncmpc.training import decode_sum
from asyncmpc.wire import messages as m
from asyncmpc.workload import workload

__all__ = ["STATS_ROUND", "run_model_owner"]

STATS_ROUND = 1


async def run_model_owner(
    config: Config, name: str, out_dir: Path, *, tls: TlsContexts | None = None
) -> dict[str, Any]:
    """Train for ``config.training.rounds`` rounds; return the metrics written to metrics.json."""
    started = time.perf_counter()
    work = workload(config, name)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = config.session
    plain = config.training.aggregation == "plain"
    servers = [] if plain else [p.name for p in config.servers]
    owners = [p.name for p in config.data_owners]
    metrics: dict[str, Any] = {
        "dataset": config.training.dataset,
        "aggregation": config.training.aggregation,
        "parameters": work.size,
        "data_owners": len(owners),
        "rounds": [],
    }
    async with Node(config, name, tls=tls) as node:
        if servers:
            await node.connect(servers)
        await node.wait_for_peers(servers)
        try:
            await node.wait_for_peers(owners)
        except PeerLost as exc:
            present = [o for o in owners if o in node.peers]
            if len(present) < max(2, config.protocol.min_owners):
                raise
            node.log.warning("%s; training with the %d data owners present", exc, len(present))
        node.log.info("%d players connected", len(node.peers))
        rounds: _Rounds = _PlainRounds(config, node, owners) if plain else _Rounds(config, node, owners)

        first = 1
        if work.stats_size:
            stats = await rounds.run(STATS_ROUND, work.stats_size, m.StatsRequest(session=session, round_no=1))
            if stats.total is None:
                raise PeerLost(f"the statistics round yielded nothing: {stats.reason}")
            work.set_stats(decode_sum(config, stats.total))
            metrics["statistics_contributors"] = list(stats.contributors)
            node.log.info("feature statistics from %d data owners", len(stats.contributors))
            first = 2

        for t in range(1, config.training.rounds + 1):
            t0 = time.perf_counter()
            round_no = t + first - 1
            theta, mean, scale = work.update()
            update = m.ModelUpdate(session=session, round_no=round_no, theta=theta, mean=mean, scale=scale)
            result = await rounds.run(round_no, work.size, update)
            row: dict[str, Any] = {"round": t, "contributors": list(result.contributors)}
            if result.total is None:
                node.log.warning("round %d yielded nothing: %s", t, result.reason)
                row.update(loss=None, test_accuracy=None, skipped=result.reason)
            else:
                total = result.total if plain else decode_sum(config, result.total)
                loss, accuracy = work.apply(total, len(result.contributors))  # type: ignore[arg-type]
                row.update(loss=loss, test_accuracy=accuracy)
            row["seconds"] = time.perf_counter() - t0
            metrics["rounds"].append(row)
            node.log.info(
                "round %d/%d: loss %s, test accuracy %s, %d contributors, %.3fs",
                t,
                config.training.rounds,
                _fmt(row["loss"]),
                _fmt(row["test_accuracy"]),
                len(result.contributors),
                row["seconds"],
            )
            work.save(out_dir / "model.npz")
            _write_json(out_dir / "metrics.json", metrics)

        await send_all(node, [Send(p, m.Finish(session=session)) for p in servers + owners if p in node.peers])
        sent, received = node.traffic()

    metrics.update(work.final())
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["model_owner_bytes"] = {"sent": sent, "received": received}
    work.save(out_dir / "model.npz")
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


class _Rounds:
    """Runs one secure aggregation round after another, with the data owners' requests beside it."""

    def __init__(self, config: Config, node: Node, owners: list[str]) -> None:
        self.config = config
        self.node = node
        self.owners = owners
        self.current: AggregationRound | None = None

    async def run(self, round_no: int, size: int, request: m.Message) -> RoundResult:
        present = tuple(o for o in self.owners if o in self.node.peers)
        self.current = AggregationRound(self.config, round_no, present, (size,))
        requests = [Send(o, request) for o in present]
        return await drive_round(self.node, self.current, self.config.protocol.round_timeout, self.on_other, requests)

    async def on_other(self, sender: str, msg: m.Message | None) -> None:
        """A data owner's message during a round: a ``Decline`` withdraws it from the round."""
        rnd = self.current
        if isinstance(msg, m.Decline) and rnd is not None:
            self.node.log.warning("%s declined round %d: %s", sender, msg.round_no, msg.reason)
            if msg.round_no == rnd.round_no:
                await send_all(self.node, rnd.withdraw(sender))
        elif msg is None:
            self.node.log.warning("lost connection to %s", sender)
            if rnd is not None:
                await send_all(self.node, rnd.withdraw(sender))  # do not wait for it until the deadline
        elif not isinstance(msg, (m.Reject, m.Abort)):
            await self.node.drop(sender, RemoteProtocolError(f"unexpected {msg.KIND!r}", peer=sender))


class _PlainRounds(_Rounds):
    """Plaintext federated averaging: gradients come here in the clear and are summed."""

    async def run(self, round_no: int, size: int, request: m.Message) -> RoundResult:
        present = [o for o in self.owners if o in self.node.peers]
        await send_all(self.node, [Send(o, request) for o in present])
        total = np.zeros(size, dtype=np.float64)
        got: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.protocol.round_timeout
        while len(got) < len(present):
            try:
                sender, msg = await self.node.recv(timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
            if isinstance(msg, m.PlainGradient) and msg.round_no == round_no and sender in present:
                if sender in got or msg.values.shape != (size,):
                    await self.node.drop(sender, RemoteProtocolError("bad plain gradient", peer=sender))
                    continue
                total += msg.values
                got.append(sender)
            elif msg is not None:
                await self.on_other(sender, msg)
        if len(got) < max(2, self.config.protocol.min_owners):
            return RoundResult(round_no, None, tuple(got), False, f"only {len(got)} gradient(s) arrived")
        return RoundResult(round_no, total, tuple(got), False)  # type: ignore[arg-type]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
