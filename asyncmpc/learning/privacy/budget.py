"""The model owner's privacy ledger: how many times the owners' data was released, the
epsilon that has cost, and whether one more release stays within the budget.

Every round the model owner opens counts as a release, whether or not it yielded a sum (a
server may have answered before the round failed), and it is counted *before* the round opens:
the count is written durably to ``privacy.json`` in the output folder first (write-ahead), so
a model owner that crashes and resumes knows every round it may have released, including the
one in flight, which it asks again under fresh noise: a second release the accountant sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from asyncmpc.errors import OutputError
from asyncmpc.learning.checkpoint import atomic_write
from asyncmpc.learning.privacy.plan import PrivacyPlan

__all__ = ["LEDGER", "Budget"]

LEDGER = "privacy.json"


class Budget:
    """The ledger of one training; ``folder`` holds its file (None: kept in memory only)."""

    def __init__(self, plan: PrivacyPlan, folder: Path | None = None, *, fresh: bool = False) -> None:
        self.plan = plan
        self.path = None if folder is None else folder / LEDGER
        self.releases = 0
        if self.path is not None and not fresh and self.path.exists():
            try:
                self.releases = int(json.loads(self.path.read_text())["releases"])
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise OutputError(
                    f"{self.path}: cannot read the privacy ledger ({exc}); it is needed to resume"
                ) from None
        self._accountant = plan.accountant()

    @property
    def epsilon(self) -> float:
        """Epsilon spent so far (at the plan's delta)."""
        return self._accountant.epsilon(self.releases)

    def allows_another(self) -> bool:
        """Whether one more release stays within ``[privacy] epsilon`` (always, with none)."""
        budget = self.plan.settings.epsilon
        return not budget or self._accountant.epsilon(self.releases + 1) <= budget

    def spend(self) -> None:
        """Count one release, durably, before it happens."""
        self.releases += 1
        if self.path is None:
            return
        text = json.dumps({"releases": self.releases}).encode()

        def write(fh: IO[bytes]) -> None:
            fh.write(text)

        try:
            atomic_write(self.path, write)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write the privacy ledger: {exc.strerror or exc}") from exc

    def summary(self) -> dict[str, Any]:
        """What metrics.json records."""
        s = self.plan.settings
        return {
            "unit": s.unit,
            "noise_multiplier": self.plan.noise_multiplier,
            "sampling_rate": self.plan.sampling_rate,
            "clip": s.clip,
            "delta": s.delta,
            "epsilon_budget": s.epsilon or None,
            "releases": self.releases,
            "epsilon": self.epsilon,
        }
