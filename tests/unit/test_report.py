"""The text summary of a run folder's metrics (no processes)."""

from __future__ import annotations

from asyncmpc.learning.report import summary


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
