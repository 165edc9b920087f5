"""``asyncmpc predict``: a saved model on the rows of a CSV file."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import TYPE_CHECKING

from asyncmpc.cli.common import fail

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from asyncmpc.learning.export import SavedModel

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model.npz written by a training run")
    parser.add_argument(
        "csv",
        help="a CSV file whose header names the model's features (in any order; other columns are left out)",
    )
    parser.add_argument(
        "--no-header",
        action="store_true",
        help="the file has no header: every line holds the model's features in the model's order",
    )
    parser.add_argument(
        "--label-column",
        default="label",
        help="for a model.npz that keeps no feature names: a column to leave out if present (default: label)",
    )
    parser.add_argument(
        "--proba",
        action="store_true",
        help="write each class's probability instead: a header row of the class labels, then a row per input row",
    )
    parser.add_argument("--out", help="write the predictions here (default: stdout)")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.errors import ConfigError, PluginError
    from asyncmpc.learning.data import load_features
    from asyncmpc.learning.export import load_model

    try:
        try:
            saved = load_model(args.model)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{args.model}: not a model.npz written by asyncmpc ({exc})") from None
        takes = saved.model.n_features
        names = saved.features
        if args.no_header and names is None:
            names = tuple(f"f{i}" for i in range(takes))  # a model that keeps no names: by position
        x = load_features(args.csv, args.label_column, names, no_header=args.no_header)
        if x.shape[1] != takes:
            raise ConfigError(f"{args.csv}: {x.shape[1]} feature columns, but the model in {args.model} takes {takes}")
        text = _probabilities(saved, x) if args.proba else "".join(f"{c}\n" for c in saved.predict(x))
        if args.out:
            try:
                with open(args.out, "w") as fh:
                    fh.write(text)
            except OSError as exc:
                raise ConfigError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
        else:
            sys.stdout.write(text)
    except (ConfigError, PluginError) as exc:
        return fail("predict", exc)
    return 0


def _probabilities(saved: SavedModel, x: NDArray[np.float64]) -> str:
    """A CSV: the class labels (sorted, as scikit-learn's ``classes_``), then each row's
    probabilities in that order."""
    proba = saved.predict_proba(x)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([str(c) for c in saved.sorted_classes])
    writer.writerows([[repr(float(p)) for p in row] for row in proba])
    return out.getvalue()
