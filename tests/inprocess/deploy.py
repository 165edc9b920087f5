"""A whole deployment in one event loop: every role's real code over the in-process transport
(``asyncmpc.net.memory``), so multi-player behaviour is tested without processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncmpc.config import Config
from asyncmpc.net.memory import Hub, Tamper
from asyncmpc.roles.compute_server import run_compute_server
from asyncmpc.roles.data_owner import run_data_owner
from asyncmpc.roles.model_owner import run_model_owner

MO = "model-owner"


@dataclass
class Outcome:
    metrics: dict[str, Any]
    errors: dict[str, BaseException] = field(default_factory=dict)
    """Players that stopped with an error (an excluded server, say), by name."""


AfterRound = Callable[[Hub, dict[str, Any]], None]
"""Called with the hub and each training round's row, as the model owner ends the round."""


def run_deployment(
    config: Config,
    out: Path,
    *,
    tamper: Tamper | None = None,
    absent: tuple[str, ...] = (),
    after_round: AfterRound | None = None,
    model_owner_config: Config | None = None,
) -> Outcome:
    """Train ``config`` with every player but ``absent`` in this process; return the model
    owner's metrics and the other players' errors. A model owner's error is raised. The model
    owner may read another configuration (``model_owner_config``: one that deviates)."""
    return asyncio.run(_deployment(config, out, tamper, absent, after_round, model_owner_config))


class _Rounds:
    """The model owner's progress display, turned into a hook between rounds."""

    def __init__(self, hub: Hub, after_round: AfterRound) -> None:
        self.hub, self.after_round = hub, after_round

    def start(self, total: int, done: int) -> None:
        pass

    def round(self, row: dict[str, Any]) -> bool:
        self.after_round(self.hub, row)
        return False

    def close(self) -> None:
        pass


async def _deployment(
    config: Config,
    out: Path,
    tamper: Tamper | None,
    absent: tuple[str, ...],
    after_round: AfterRound | None,
    model_owner_config: Config | None,
) -> Outcome:
    hub = Hub(config, tamper)
    progress = None if after_round is None else _Rounds(hub, after_round)
    errors: dict[str, BaseException] = {}

    async def player(name: str, run: Awaitable[Any]) -> None:
        try:
            await run
        except Exception as exc:  # a player's error is what the test looks at
            errors[name] = exc

    others: list[asyncio.Task[None]] = []
    for p in config.servers:
        if p.name not in absent:
            others.append(asyncio.create_task(player(p.name, run_compute_server(config, p.name, opener=hub.open))))
    for p in config.data_owners:
        if p.name not in absent:
            others.append(asyncio.create_task(player(p.name, run_data_owner(config, p.name, opener=hub.open))))
    try:
        metrics = await run_model_owner(model_owner_config or config, MO, out, opener=hub.open, progress=progress)
        await asyncio.gather(*others)  # every player exits on Finish
    finally:
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
    return Outcome(metrics, errors)
