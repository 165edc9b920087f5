"""Layer 6: the model owner process: runs the rounds, holds the model, sees only the aggregate.

Round 1 gathers the global feature statistics; training round t runs as protocol round t + 1.
After every round it checkpoints ``model.npz`` and ``metrics.json`` in the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from asyncmpc.config import Config
from asyncmpc.data import load_split
from asyncmpc.errors import ConfigError, PeerLost, RemoteProtocolError
from asyncmpc.logreg import Model
from asyncmpc.net.runtime import Node, TlsContexts
from asyncmpc.protocol.aggregation import AggregationRound, RoundResult
from asyncmpc.protocol.events import Send
from asyncmpc.roles.driver import drive_round, send_all
from asyncmpc.training import (
    ModelOwnerState,
    contribution_size,
    decode_sum,
    pooled_baseline,
    stats_size,
)
from asyncmpc.wire import messages as m

__all__ = ["STATS_ROUND", "run_model_owner"]

STATS_ROUND = 1


async def run_model_owner(
    config: Config, name: str, out_dir: Path, *, tls: TlsContexts | None = None
) -> dict[str, Any]:
    """Train for ``config.training.rounds`` rounds; return the metrics written to metrics.json."""
    started = time.perf_counter()
    split = load_split(config)
    if split.n_features < 1:
        raise ConfigError(
            f'{config.path}: [players.{name}] csv: the model owner needs a test file when dataset = "csv"'
        )
    state = ModelOwnerState(config, Model(split.n_features, len(split.classes)), split.classes)
    out_dir.mkdir(parents=True, exist_ok=True)
    session = config.session
    servers = [p.name for p in config.servers]
    owners = [p.name for p in config.data_owners]
    metrics: dict[str, Any] = {
        "dataset": config.training.dataset,
        "classes": list(split.classes),
        "data_owners": len(owners),
        "rounds": [],
    }
    async with Node(config, name, tls=tls) as node:
        await node.connect()
        await node.wait_for_peers(servers + owners)
        node.log.info("all %d players connected", len(servers) + len(owners))

        rounds = _Rounds(config, node, owners)
        stats = await rounds.run(STATS_ROUND, stats_size(split.n_features), m.StatsRequest(session=session, round_no=1))
        if stats.total is None:
            raise PeerLost(f"the statistics round yielded nothing: {stats.reason}")
        state.set_scaling(decode_sum(config, stats.total))
        metrics["statistics_contributors"] = list(stats.contributors)
        node.log.info("feature statistics from %d data owners", len(stats.contributors))

        for t in range(1, config.training.rounds + 1):
            t0 = time.perf_counter()
            update = m.ModelUpdate(
                session=session, round_no=t + 1, theta=state.theta, mean=state.mean, scale=state.scale
            )
            result = await rounds.run(t + 1, contribution_size(state.model), update)
            row: dict[str, Any] = {"round": t, "contributors": list(result.contributors)}
            if result.total is None:
                node.log.warning("round %d yielded nothing: %s", t, result.reason)
                row.update(loss=None, test_accuracy=None, skipped=result.reason)
            else:
                loss = state.apply(decode_sum(config, result.total), len(result.contributors))
                row.update(loss=loss, test_accuracy=state.accuracy(split.test))
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
            state.save(out_dir / "model.npz")
            _write_json(out_dir / "metrics.json", metrics)

        await send_all(node, [Send(p, m.Finish(session=session)) for p in servers + owners if p in node.peers])
        sent, received = node.traffic()

    metrics["final_test_accuracy"] = state.accuracy(split.test)
    metrics["sklearn_pooled_accuracy"] = pooled_baseline(split, state.mean, state.scale)
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["model_owner_bytes"] = {"sent": sent, "received": received}
    state.save(out_dir / "model.npz")
    _write_json(out_dir / "metrics.json", metrics)
    return metrics


class _Rounds:
    """Runs one aggregation round after another, with the data owners' requests beside it."""

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
        elif not isinstance(msg, (m.Reject, m.Abort)):
            await self.node.drop(sender, RemoteProtocolError(f"unexpected {msg.KIND!r}", peer=sender))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
