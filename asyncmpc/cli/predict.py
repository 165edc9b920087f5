"""``asyncmpc predict``: a saved model on the rows of a CSV file."""

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
    from asyncmpc.errors import ConfigError, PluginError
    from asyncmpc.learning.data import load_features
    from asyncmpc.learning.training import load_model

    try:
        try:
            saved = load_model(args.model)
        except (OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"{args.model}: not a model.npz written by asyncmpc ({exc})") from None
        x = load_features(args.csv, args.label_column)
        takes = saved.model.n_features
        if x.shape[1] != takes:
            raise ConfigError(f"{args.csv}: {x.shape[1]} feature columns, but the model in {args.model} takes {takes}")
        text = "".join(f"{c}\n" for c in saved.predict(x))
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
