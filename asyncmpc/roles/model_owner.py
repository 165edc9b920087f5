"""The model owner process: runs the rounds, holds the model, sees only the aggregate.

With a data set, a statistics round first gathers the global feature statistics. After every
round it appends the round's row to ``metrics.jsonl`` and writes ``checkpoint.npz`` in the
output folder (durably, while the next round runs), and ``model.npz`` and ``metrics.json`` (the
summary, every row included, and each data owner's contributed rounds) at the end; started
again with the same config and folder, it resumes at the next round (``fresh=True`` starts
afresh). A disputed round runs again as a MAC
round under the next round number (``roles.rounds``). The rows stay on disk:
``metrics["rounds"]`` is a ``RoundLog`` over ``metrics.jsonl``, and metrics.json is written by
streaming them from it, so the model owner's memory does not grow with the number of rounds.
With ``aggregation = "plain"`` (synthetic benchmarks only) data owners send their gradients straight
here: the plaintext floor that secure aggregation is measured against.

Servers: it keeps dialling every server (``Node.maintain``) and runs each round on the servers
connected when it starts (two are enough: any two hold every component). A server lost
mid-round is left out of it (``AggregationRound.lose``); a silent one is disconnected, so it
is dialled again and rejoins when it answers. With fewer than two servers, rounds pause until
one returns (at most ``idle_timeout``).

Under ``[privacy]`` there is no statistics round (the scaling comes from the model owner's
test set), every round is counted by the privacy ledger (``privacy.budget``, written to
``privacy.json`` before the round opens), each row
records the epsilon spent, and training stops, saying so, before a round would exceed the
budget. A disputed round cannot be re-run with MACs (that would open the noise-free sum): it
stops training with ``DisputeError``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from asyncmpc.config import Config
from asyncmpc.errors import BudgetSpent, OutputError, PeerLost
from asyncmpc.learning.checkpoint import (
    CHECKPOINT,
    ROUND_LOG,
    RoundLog,
    load_checkpoint,
    save_checkpoint,
    write_metrics,
)
from asyncmpc.learning.privacy.budget import Budget
from asyncmpc.learning.privacy.plan import plan_for
from asyncmpc.learning.report import contributed_rounds
from asyncmpc.learning.training import decode_sum
from asyncmpc.learning.workload import Workload, workload
from asyncmpc.net.runtime import Node
from asyncmpc.net.tls import TlsContexts
from asyncmpc.net.transport import Opener, Transport
from asyncmpc.protocol.aggregation import Kind
from asyncmpc.protocol.events import Send
from asyncmpc.roles.driver import send_all
from asyncmpc.roles.rounds import Outcome, PlainRounds, Rounds
from asyncmpc.wire import messages as m

__all__ = ["STATS_ROUND", "run_model_owner"]

STATS_ROUND = 1


class Progress(Protocol):
    """What shows the rounds as they end (the command line's bar or lines)."""

    def start(self, total: int, done: int) -> None: ...

    def round(self, row: dict[str, Any]) -> bool:
        """Show a finished round; False if the model owner should log it as a line."""
        ...

    def close(self) -> None: ...


class _Lines:
    def start(self, total: int, done: int) -> None:
        pass

    def round(self, row: dict[str, Any]) -> bool:
        return False

    def close(self) -> None:
        pass


async def run_model_owner(
    config: Config,
    name: str,
    out_dir: Path,
    *,
    tls: TlsContexts | None = None,
    opener: Opener | None = None,
    fresh: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train for ``config.training.rounds`` rounds; return the metrics written to metrics.json.
    The model owner's connections come from ``opener`` (default: a TCP ``Node``)."""
    started = time.perf_counter()
    work = workload(config, name)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create the output folder: {exc.strerror or exc}") from exc
    plain = config.training.aggregation == "plain"
    servers = [] if plain else [p.name for p in config.servers]
    owners = [p.name for p in config.data_owners]
    metrics: dict[str, Any] = {
        "dataset": config.training.dataset,
        "aggregation": config.training.aggregation,
        "parameters": work.size,
        "data_owners": len(owners),
        "rounds": None,  # the round log, set below; the key keeps its place in metrics.json
    }
    done = 0 if fresh else _resume(config, out_dir, work, metrics)
    finished = done >= config.training.rounds and (out_dir / "metrics.json").exists()
    """A finished run is left as it was: its outputs are not written again."""
    budget = None if config.privacy is None else Budget(plan_for(config, work.size), out_dir, fresh=fresh)
    try:
        log = metrics["rounds"] = RoundLog.restart(out_dir, done)  # no rows at a fresh start; at a resume, those kept
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write {ROUND_LOG}: {exc.strerror or exc}") from exc
    excluded: dict[str, str] = metrics.setdefault("excluded_servers", {})  # kept across a resume
    servers = [s for s in servers if s not in excluded]
    async with (opener or functools.partial(Node, tls=tls))(config, name, greet=_schema(config, work)) as node:
        if done >= config.training.rounds:
            node.logger(__name__).info(
                "%s: all %d rounds are done already; nothing to train%s",
                out_dir / CHECKPOINT,
                done,
                "; its outputs are left as they were (--fresh trains again)" if finished else "",
            )
        elif done:
            node.logger(__name__).info("resuming from %s after round %d", out_dir / CHECKPOINT, done)
        if budget is not None:
            _log_plan(node, budget)
        node.maintain(servers)
        await _wait_for_players(config, node, servers, owners)
        first = 2 if work.stats_size else 1  # training round t takes the batches of step t + first - 2
        start = STATS_ROUND if work.stats_size and "scaling" not in metrics else done + first
        rounds: Rounds = (PlainRounds if plain else Rounds)(config, node, owners, start, excluded, budget)
        for server, reason in list(excluded.items()):
            await rounds.exclude(server, reason)  # tell everyone again: they may have restarted
        checkpoints = _Checkpointer(config, out_dir, log)

        if work.stats_size and "scaling" not in metrics:
            await _statistics(config, node, rounds, work, metrics)
        elif config.privacy is not None:
            metrics["scaling"] = "the model owner's test set ([privacy]: no statistics round)"
        shown = progress or _Lines()
        shown.start(config.training.rounds, done)
        try:
            for t in range(done + 1, config.training.rounds + 1):
                if budget is not None and not budget.allows_another():
                    metrics["stopped"] = _out_of_budget(node, budget, t)
                    break
                try:
                    row = await _train_round(config, node, rounds, work, t, t + first - 2)
                except BudgetSpent as exc:
                    metrics["stopped"] = f"stopped at round {t}: a server's [privacy] budget is spent: {exc}"
                    node.logger(__name__).warning("%s", metrics["stopped"])
                    break
                if budget is not None:
                    row["epsilon"] = budget.epsilon
                    metrics["privacy"] = budget.summary()
                if not shown.round(row):
                    _log_round(node, config, row)
                await checkpoints.after_round(work, metrics, row, t)
        finally:
            shown.close()
        await checkpoints.flush()
        if rounds.left_out:
            metrics["left_out_owners"] = list(rounds.left_out)
        if config.protocol.norm_bound:
            metrics["norm_failed_rounds"] = {o: rounds.norm_failed.get(o, 0) for o in owners}
        if not finished:
            metrics["contributed_rounds"] = _contributions(node, owners, log)

        finish = m.Finish(session=config.session)
        await send_all(node, [Send(p, finish) for p in servers + owners if p in node.peers])
        sent, received = node.traffic()

    if finished:
        return _finished_before(out_dir)
    metrics.update(work.final())
    metrics["wall_seconds"] = time.perf_counter() - started
    metrics["model_owner_bytes"] = {"sent": sent, "received": received}
    try:
        work.save(out_dir / "model.npz")
        write_metrics(out_dir / "metrics.json", metrics)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write the model: {exc.strerror or exc}") from exc
    return metrics


def _finished_before(out_dir: Path) -> dict[str, Any]:
    """The metrics of a run that had finished before, as it wrote them (``finished_before``
    marks them for the command line; the file is not written again)."""
    try:
        metrics: dict[str, Any] = json.loads((out_dir / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise OutputError(f"{out_dir}: cannot read metrics.json: {exc}") from exc
    metrics["finished_before"] = True
    return metrics


async def _statistics(config: Config, node: Transport, rounds: Rounds, work: Workload, metrics: dict[str, Any]) -> None:
    """The secure statistics round: global feature means and variances, before training."""
    features = (work.stats_size - 1) // 2  # the statistics are [n, sum x, sum x^2]
    request = m.StatsRequest(session=config.session, round_no=STATS_ROUND, features=features)
    outcome = await rounds.run(work.stats_size, request)
    stats = outcome.result
    metrics["statistics_round"] = _round_row(0, outcome)
    if stats.total is None:
        raise PeerLost(f"the statistics round yielded nothing: {stats.reason}")
    work.set_stats(decode_sum(config, stats.total))
    metrics["statistics_contributors"] = list(stats.contributors)
    metrics["scaling"] = "secure statistics round"
    node.logger(__name__).info("feature statistics from %d data owners", len(stats.contributors))


async def _train_round(
    config: Config, node: Transport, rounds: Rounds, work: Workload, t: int, step: int
) -> dict[str, Any]:
    """Training round ``t`` (on the owners' batches of ``step``): send the model, aggregate,
    step; return its row for metrics.json."""
    t0 = time.perf_counter()
    theta, mean, scale = work.update()
    update = m.ModelUpdate(session=config.session, theta=theta, mean=mean, scale=scale, step=step)
    outcome = await rounds.run(work.size, update)
    result = outcome.result
    row = _round_row(t, outcome)
    if result.total is None:
        node.logger(__name__).warning("round %d yielded nothing: %s", t, result.reason)
        row.update(loss=None, test_accuracy=None, skipped=result.reason)
    else:
        plain = config.training.aggregation == "plain"
        total = result.total if plain else decode_sum(config, result.total)
        loss, accuracy = work.apply(total, len(result.contributors))  # type: ignore[arg-type]
        row.update(loss=loss, test_accuracy=accuracy)
    row["seconds"] = time.perf_counter() - t0
    row["time"] = round(time.time(), 6)  # when it ended (Unix seconds): wall time between rows
    return row


async def _wait_for_players(config: Config, node: Transport, servers: list[str], owners: list[str]) -> None:
    """Wait for the servers (two within ``connect_timeout``, the third ``server_timeout`` more)
    and for every data owner (``connect_timeout``); go on with two servers and ``min_owners``
    owners if that is all there is."""
    p = config.protocol
    if servers:
        up = await node.wait_for_most(servers, 2, p.connect_timeout, p.server_timeout)
        if len(up) < len(servers):
            down = ", ".join(s for s in servers if s not in up)
            node.logger(__name__).warning("%s did not connect; training with two servers until it does", down)
    try:
        await node.wait_for_peers(owners)
    except PeerLost as exc:
        present = [o for o in owners if o in node.peers]
        if len(present) < max(2, config.protocol.min_owners):
            raise
        node.logger(__name__).warning("%s; training with the %d data owners present", exc, len(present))
    node.logger(__name__).info("%d players connected", len(node.peers))


def _resume(config: Config, out_dir: Path, work: Workload, metrics: dict[str, Any]) -> int:
    """Load the checkpoint in ``out_dir``, if any: the training rounds already done."""
    ckpt = load_checkpoint(out_dir, config)
    if ckpt is None:
        return 0
    work.restore(ckpt.arrays)
    metrics.update({k: v for k, v in ckpt.meta.items() if k != "rounds"})
    metrics["resumed_after"] = [*ckpt.meta.get("resumed_after", []), ckpt.round]
    return ckpt.round


def _contributions(node: Transport, owners: list[str], log: RoundLog) -> dict[str, int]:
    """Each data owner's contributed rounds (``report.contributed_rounds``, from the round log
    on disk, so a resumed run counts the rounds before it too); a warning names the owners
    whose input no released sum held."""
    counts = contributed_rounds(owners, log)
    if any(counts.values()):  # some sum was released
        for owner in (o for o, c in counts.items() if c == 0):
            node.logger(__name__).warning("%s contributed to no round: no released sum holds its input", owner)
    return counts


def _log_plan(node: Transport, budget: Budget) -> None:
    p, s = budget.plan, budget.plan.settings
    target = f"for epsilon {s.epsilon:g} at delta {s.delta:g} over {p.rounds} rounds" if s.epsilon else "as set"
    how = f"DP-FTRL trees of {s.epoch_steps} rounds" if s.mechanism == "tree" else f"sampling rate {p.sampling_rate:g}"
    node.logger(__name__).info(
        "[privacy] per %s: clip %g, %s, noise multiplier %.4f (%s); proven epsilon spent so far %.3f "
        "(Gaussian-equivalent %.3f)",
        s.unit,
        s.clip,
        how,
        p.noise_multiplier,
        target,
        budget.epsilon,
        budget.gaussian_epsilon,
    )


def _out_of_budget(node: Transport, budget: Budget, t: int) -> str:
    s = budget.plan.settings
    why = (
        f"stopped before round {t}: one more round would spend more than epsilon {s.epsilon:g} "
        f"(delta {s.delta:g}); spent {budget.epsilon:.4f} in {budget.releases} releases"
    )
    node.logger(__name__).warning("%s", why)
    return why


class _Checkpointer:
    """Appends the round's row to the round log, then writes checkpoint.npz, after each round,
    on a worker thread while the next round runs (a durable write of an 8 MB model takes tens
    of milliseconds, mostly fsync, which releases the GIL). One write at a time: a round's
    write waits for the last one, so a crash loses at most the round in flight and the one
    being written, which a resumed run redoes (rows after the checkpoint's round are dropped
    then). The arrays handed over are never changed in place (each optimizer step makes new
    ones), so the thread writes a consistent state."""

    def __init__(self, config: Config, out_dir: Path, log: RoundLog) -> None:
        self.config = config
        self.out_dir = out_dir
        self.log = log
        self._pending: asyncio.Future[None] | None = None

    async def after_round(self, work: Workload, metrics: dict[str, Any], row: dict[str, Any], t: int) -> None:
        await self.flush()
        meta = json.loads(json.dumps({k: v for k, v in metrics.items() if k != "rounds"}))  # a snapshot
        state = dict(work.state())
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._write, row, meta, state, t))

    def _write(self, row: dict[str, Any], meta: dict[str, Any], state: dict[str, Any], t: int) -> None:
        # the row first: a crash in between redoes round t, whose row is then dropped
        try:
            self.log.append(row)
            save_checkpoint(self.out_dir, self.config, t, state, meta)
        except OSError as exc:
            raise OutputError(f"{self.out_dir}: cannot write the checkpoint: {exc.strerror or exc}") from exc

    async def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending


def _round_row(t: int, outcome: Outcome) -> dict[str, Any]:
    result = outcome.result
    row: dict[str, Any] = {"round": t, "contributors": list(result.contributors)}
    if result.servers:
        row["servers"] = list(result.servers)
        row["cross_checked"] = result.cross_checked
    if result.mac:
        row["mac"] = True
    if outcome.disputed is not None and outcome.disputed.kind is Kind.RECHECK:
        row["rechecked"] = list(outcome.disputed.servers)  # an ordinary round that ended on these two
    elif outcome.disputed is not None:
        row["disputed"] = list(outcome.disputed.suspects)
    if result.cheater:
        row["excluded"] = result.cheater
    if result.inconsistent:
        row["inconsistent_owners"] = list(result.inconsistent)
    if result.culprit:
        row["left_out_owner"] = result.culprit
    return row


def _log_round(node: Transport, config: Config, row: dict[str, Any]) -> None:
    unchecked = ""
    if row.get("servers") and not row.get("cross_checked") and row.get("skipped") is None:
        unchecked = f", not cross-checked (servers {', '.join(row['servers'])})"
    spent = "" if "epsilon" not in row else f", epsilon {row['epsilon']:.3f}"
    node.logger(__name__).info(
        "round %d/%d: loss %s, test accuracy %s, %d contributors, %.3fs%s%s",
        row["round"],
        config.training.rounds,
        _fmt(row["loss"]),
        _fmt(row["test_accuracy"]),
        len(row["contributors"]),
        row["seconds"],
        spent,
        unchecked,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _schema(config: Config, work: Workload) -> Callable[[str], list[m.Message]]:
    """The greeting of a data owner: the names of the model's features (``Schema``), so that
    an owner whose CSV file orders its columns otherwise takes them by name."""
    names = work.feature_names
    owners = {p.name for p in config.data_owners}

    def greet(peer: str) -> list[m.Message]:
        return [m.Schema(session=config.session, features=names)] if peer in owners and names else []

    return greet
