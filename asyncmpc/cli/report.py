"""``asyncmpc report``: the summary and plots of a run folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", default="runs/latest", help="a run folder (default: runs/latest)")
    parser.add_argument("--no-plot", action="store_true", help="print the summary only")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.errors import OutputError
    from asyncmpc.learning.report import PLOT, load_run, plot, summary

    folder = Path(args.folder)
    try:
        metrics = load_run(folder)
        for line in summary(metrics):
            print(line)
        if not args.no_plot:
            if plot(metrics, folder / PLOT):
                print(f"wrote {folder / PLOT}")
            else:
                print("no plot: matplotlib is not installed (pip install 'asyncmpc[plot]')")
    except OutputError as exc:
        return fail("report", exc)
    return 0
