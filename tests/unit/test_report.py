"""The text summary of a run folder's metrics (no processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncmpc.learning.checkpoint import RoundLog
from asyncmpc.learning.report import contributed_rounds, plot, summary


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


def test_each_owners_contributed_rounds_count_only_rounds_that_released_a_sum() -> None:
    rows = [
        {"round": 1, "contributors": ["a", "b"]},
        {"round": 2, "contributors": ["a", "b", "c"], "skipped": "the servers disagree"},
        {"round": 3, "contributors": ["a"]},
    ]
    assert contributed_rounds(["a", "b", "c"], rows) == {"a": 2, "b": 1, "c": 0}


def test_the_summary_names_the_owners_that_contributed_less_fewest_first() -> None:
    rows = [{"round": t, "loss": 0.5, "test_accuracy": 0.9} for t in (1, 2, 3, 4)]
    everyone = summary({"rounds": rows, "contributed_rounds": {"a": 4, "b": 4}})
    assert "each of the 2 data owners contributed to all 4 rounds that released a sum" in everyone
    lines = summary({"rounds": rows, "contributed_rounds": {"a": 4, "b": 3, "c": 0, "d": 4}})
    assert "contributed rounds of the 4 that released a sum: c 0, b 3; the other 2 all 4" in lines
    many = {f"o{i:02}": min(i, 4) for i in range(12)}
    line = summary({"rounds": rows, "contributed_rounds": many})[-1]
    assert line == ("contributed rounds of the 4 that released a sum: o00 0, o01 1, o02 2, o03 3; the other 8 all 4")
    crowd = {f"o{i:02}": 0 for i in range(12)}
    assert summary({"rounds": rows, "contributed_rounds": crowd})[-1].endswith("o09 0 and 2 more")
