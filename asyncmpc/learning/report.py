"""What a finished run folder says: a short text summary and ``training.png``.

Reads ``metrics.json`` (the summary a model owner writes at the end) or, for a run still going
or stopped, the round log ``metrics.jsonl``. The plot needs matplotlib (the ``plot`` extra,
which ``scripts/setup.sh`` installs); without it the summary still works and the plot is
skipped with one line saying how to get it.

Both go over the rows once and keep counts and the plotted numbers only, so a model owner's
``RoundLog`` (rows read back from disk) is never held whole. ``contributed_rounds`` counts, per
data owner, the rounds whose released sum held its input (metrics.json's ``contributed_rounds``),
so an owner that contributed nothing shows.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asyncmpc.errors import OutputError
from asyncmpc.learning.checkpoint import read_rounds

__all__ = ["PLOT", "contributed_rounds", "load_run", "plot", "summary"]

PLOT = "training.png"
_NAMED = 10
"""The most owners the summary names one by one (the rest are counted)."""


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


def contributed_rounds(owners: Iterable[str], rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """For each of ``owners``, in the rounds ``rows`` record, how many released a sum that
    held its input (a round that yielded nothing counts for no one)."""
    counts = dict.fromkeys(owners, 0)
    for r in rows:
        if r.get("skipped") is None:
            for owner in r.get("contributors", ()):
                if owner in counts:
                    counts[owner] += 1
    return counts


def summary(metrics: dict[str, Any]) -> list[str]:
    """A few lines: accuracy against the pooled baseline, rounds, time, bytes, each data
    owner's contributed rounds, faults."""
    count = skipped = two = disputed = 0
    last: dict[str, Any] | None = None  # the last round that was not skipped
    for r in metrics.get("rounds", []):
        count += 1
        if r.get("skipped") is None:
            last = r
        else:
            skipped += 1
        if r.get("servers") and len(r["servers"]) < 3:
            two += 1
        if r.get("disputed"):
            disputed += 1
    lines = []
    final, base = metrics.get("final_test_accuracy"), metrics.get("sklearn_pooled_accuracy")
    if final is not None:
        lines.append(f"final test accuracy {final:.4f}" + (f", scikit-learn pooled {base:.4f}" if base else ""))
    elif last is not None and last.get("test_accuracy") is not None:  # a run that has not ended
        lines.append(f"test accuracy {last['test_accuracy']:.4f} after round {last['round']} (run not ended)")
    model = metrics.get("model")
    what = f" of {model}" + (f", {metrics['local_steps']} local steps" if metrics.get("local_steps", 1) > 1 else "")
    lines.append(f"{count} rounds" + (what if model else "") + (f", {skipped} yielded nothing" if skipped else ""))
    if metrics.get("contributed_rounds"):
        lines.append(_contributions(metrics["contributed_rounds"], count - skipped))
    if "wall_seconds" in metrics:
        lines.append(f"wall time {metrics['wall_seconds']:.2f}s")
    mo = metrics.get("model_owner_bytes")
    if mo:
        lines.append(f"model owner sent {mo['sent']:,} bytes and received {mo['received']:,}")
    if two or disputed or metrics.get("excluded_servers"):
        excluded = ", ".join(metrics.get("excluded_servers", {})) or "none"
        lines.append(f"{two} rounds on two servers, {disputed} disputed, excluded: {excluded}")
    return lines


def _contributions(counts: dict[str, int], released: int) -> str:
    """One line: the owners that contributed to fewer than the ``released`` rounds, fewest
    first (at most ``_NAMED`` by name), and how many contributed to all of them."""
    short = sorted((c, o) for o, c in counts.items() if c < released)
    if not short:
        return f"each of the {len(counts)} data owners contributed to all {released} rounds that released a sum"
    named = ", ".join(f"{o} {c}" for c, o in short[:_NAMED])
    more = f" and {len(short) - _NAMED} more" if len(short) > _NAMED else ""
    rest = len(counts) - len(short)
    others = f"; the other {rest} all {released}" if rest else ""
    return f"contributed rounds of the {released} that released a sum: {named}{more}{others}"


def plot(metrics: dict[str, Any], path: Path) -> bool:
    """Write loss and test accuracy per round (and the pooled baseline) to ``path``; False
    when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    at, loss, at_acc, acc = array("d"), array("d"), array("d"), array("d")
    for r in metrics.get("rounds", []):
        if r.get("loss") is None:
            continue
        at.append(r["round"])
        loss.append(r["loss"])
        if r.get("test_accuracy") is not None:
            at_acc.append(r["round"])
            acc.append(r["test_accuracy"])
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(at, loss)
    ax_loss.set(xlabel="round", ylabel="training loss", title="loss")
    ax_acc.plot(at_acc, acc, label="secure training")
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
