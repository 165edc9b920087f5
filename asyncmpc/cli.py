"""Layer 7: command line: argparse, logging set-up, exit codes.

Exit codes: 0 success, 2 a configuration or protocol error (one line on stderr), 1 anything
else (with a traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from asyncmpc.config import COMPUTE_SERVER, DATA_OWNER, load_config
from asyncmpc.errors import AsyncMpcError
from asyncmpc.net.runtime import run

__all__ = ["main"]


class _PlayerFilter(logging.Filter):
    def __init__(self, player: str) -> None:
        super().__init__()
        self.player = player

    def filter(self, record: logging.LogRecord) -> bool:
        record.player = self.player
        return True


def setup_logging(player: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(player)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_PlayerFilter(player))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncmpc", description="Run one asyncmpc player.")
    parser.add_argument("--config", default="hosts.toml", help="deployment file (default: hosts.toml)")
    parser.add_argument("--name", required=True, help="this player's name in the deployment file")
    parser.add_argument("--out", default="runs/latest", help="model owner's output folder (default: runs/latest)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.name, args.log_level)
    try:
        config = load_config(args.config)
        player = config.player(args.name)
        if player.role == COMPUTE_SERVER:
            from asyncmpc.roles.compute_server import run_compute_server

            run(lambda: run_compute_server(config, args.name))
        elif player.role == DATA_OWNER:
            from asyncmpc.roles.data_owner import run_data_owner

            run(lambda: run_data_owner(config, args.name))
        else:
            from asyncmpc.roles.model_owner import run_model_owner

            metrics = run(lambda: run_model_owner(config, args.name, Path(args.out)))
            print(
                f"final test accuracy {metrics['final_test_accuracy']}, scikit-learn pooled "
                f"{metrics['sklearn_pooled_accuracy']}, {metrics['wall_seconds']:.2f}s; wrote {args.out}"
            )
    except AsyncMpcError as exc:
        print(f"asyncmpc: {args.name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
