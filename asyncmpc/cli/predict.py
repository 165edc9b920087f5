"""Layer 7: ``asyncmpc predict``: a saved model on the rows of a CSV file."""

from __future__ import annotations

import argparse
import sys

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a model.npz written by a training run")
    parser.add_argument("csv", help="a CSV file with a header row and the model's feature columns")
    parser.add_argument("--label-column", default="label", help="a column to leave out if present (default: label)")
    parser.add_argument("--out", help="write the predicted classes here, one per line (default: stdout)")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.data import load_features
    from asyncmpc.errors import ConfigError
    from asyncmpc.training import load_sklearn

    try:
        try:
            clf = load_sklearn(args.model)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{args.model}: not a model.npz written by asyncmpc ({exc})") from None
        x = load_features(args.csv, args.label_column)
        if x.shape[1] != clf.n_features_in_:
            raise ConfigError(
                f"{args.csv}: {x.shape[1]} feature columns, but the model in {args.model} takes {clf.n_features_in_}"
            )
        text = "".join(f"{c}\n" for c in clf.predict(x))
        if args.out:
            try:
                with open(args.out, "w") as fh:
                    fh.write(text)
            except OSError as exc:
                raise ConfigError(f"{args.out}: cannot write: {exc.strerror or exc}") from None
        else:
            sys.stdout.write(text)
    except ConfigError as exc:
        return fail("predict", exc)
    return 0
