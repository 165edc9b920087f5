"""What a finished run folder says: a short text summary and ``training.png``.

Reads ``metrics.json`` (the summary a model owner writes at the end) or, for a run still going
or stopped, the round log ``metrics.jsonl``. The plot needs matplotlib (the ``plot`` extra,
which ``scripts/setup.sh`` installs); without it the summary still works and the plot is
skipped with one line saying how to get it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asyncmpc.errors import OutputError
from asyncmpc.learning.checkpoint import read_rounds

__all__ = ["PLOT", "load_run", "plot", "summary"]

PLOT = "training.png"


def load_run(folder: Path) -> dict[str, Any]:
    """The run's metrics: metrics.json if the run ended, else its rounds so far."""
    try:
        return json.loads((folder / "metrics.json").read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        rows = read_rounds(folder)
        if not rows:
            raise OutputError(f"{folder}: no metrics.json or metrics.jsonl: not a run folder") from None
        return {"rounds": rows}
    except (OSError, ValueError) as exc:
        raise OutputError(f"{folder}/metrics.json: cannot read: {exc}") from None


def summary(metrics: dict[str, Any]) -> list[str]:
    """A few lines: accuracy against the pooled baseline, rounds, time, bytes, faults."""
    rows = metrics.get("rounds", [])
    done = [r for r in rows if r.get("skipped") is None]
    lines = []
    final, base = metrics.get("final_test_accuracy"), metrics.get("sklearn_pooled_accuracy")
    if final is not None:
        lines.append(f"final test accuracy {final:.4f}" + (f", scikit-learn pooled {base:.4f}" if base else ""))
    elif done and done[-1].get("test_accuracy") is not None:  # a run that has not ended
        lines.append(f"test accuracy {done[-1]['test_accuracy']:.4f} after round {done[-1]['round']} (run not ended)")
    skipped = len(rows) - len(done)
    model = metrics.get("model")
    what = f" of {model}" + (f", {metrics['local_steps']} local steps" if metrics.get("local_steps", 1) > 1 else "")
    lines.append(f"{len(rows)} rounds" + (what if model else "") + (f", {skipped} yielded nothing" if skipped else ""))
    if "wall_seconds" in metrics:
        lines.append(f"wall time {metrics['wall_seconds']:.2f}s")
    mo = metrics.get("model_owner_bytes")
    if mo:
        lines.append(f"model owner sent {mo['sent']:,} bytes and received {mo['received']:,}")
    two = sum(1 for r in rows if r.get("servers") and len(r["servers"]) < 3)
    disputed = sum(1 for r in rows if r.get("disputed"))
    if two or disputed or metrics.get("excluded_servers"):
        excluded = ", ".join(metrics.get("excluded_servers", {})) or "none"
        lines.append(f"{two} rounds on two servers, {disputed} disputed, excluded: {excluded}")
    return lines


def plot(metrics: dict[str, Any], path: Path) -> bool:
    """Write loss and test accuracy per round (and the pooled baseline) to ``path``; False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    rows = [r for r in metrics.get("rounds", []) if r.get("loss") is not None]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["round"] for r in rows], [r["loss"] for r in rows])
    ax_loss.set(xlabel="round", ylabel="training loss", title="loss")
    acc = [r for r in rows if r.get("test_accuracy") is not None]
    ax_acc.plot([r["round"] for r in acc], [r["test_accuracy"] for r in acc], label="secure training")
    base = metrics.get("sklearn_pooled_accuracy")
    if base is not None:
        ax_acc.axhline(base, color="gray", linestyle="--", label="scikit-learn, pooled data")
    ax_acc.set(xlabel="round", ylabel="test accuracy", title="test accuracy")
    ax_acc.legend(loc="lower right")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return True
