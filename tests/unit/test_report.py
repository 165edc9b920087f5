"""The text summary of a run folder's metrics (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncmpc.learning.checkpoint import RoundLog
from asyncmpc.learning.report import plot, summary


def test_rounds_without_a_loss_are_not_counted_as_yielding_nothing_only_skipped_ones_are() -> None:
    synthetic = {"rounds": [{"round": t, "loss": None, "test_accuracy": None} for t in (1, 2, 3)]}
    assert "3 rounds" in summary(synthetic)
    rows = [
        {"round": 1, "loss": 0.5, "test_accuracy": 0.9},
        {"round": 2, "loss": None, "test_accuracy": None, "skipped": "only 1 contributor"},
        {"round": 3, "loss": 0.4, "test_accuracy": 0.92},
    ]
    lines = summary({"rounds": rows, "model": "mlp", "local_steps": 3})
    assert lines[0] == "test accuracy 0.9200 after round 3 (run not ended)"
    assert lines[1] == "3 rounds of mlp, 3 local steps, 1 yielded nothing"


def test_a_model_owners_round_log_is_summarised_and_plotted_as_its_rows_would_be(tmp_path: Path) -> None:
    rows = [
        {"round": 1, "loss": 0.5, "test_accuracy": 0.9, "servers": ["server-0", "server-1", "server-2"]},
        {"round": 2, "loss": None, "test_accuracy": None, "skipped": "no sum", "servers": ["server-0", "server-1"]},
        {"round": 3, "loss": 0.4, "test_accuracy": 0.92, "disputed": ["server-2"], "servers": ["server-0"]},
    ]
    log = RoundLog.restart(tmp_path)
    for row in rows:
        log.append(row)
    metrics = {"model": "logreg", "excluded_servers": {"server-2": "lied"}, "wall_seconds": 1.0}
    lines = summary({**metrics, "rounds": log})
    assert lines == summary({**metrics, "rounds": rows})
    assert lines[-1] == "2 rounds on two servers, 1 disputed, excluded: server-2"
    pytest.importorskip("matplotlib")
    assert plot({"rounds": log, "sklearn_pooled_accuracy": 0.95}, tmp_path / "training.png")
    assert (tmp_path / "training.png").stat().st_size > 0
