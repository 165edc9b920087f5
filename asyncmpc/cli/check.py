"""Layer 7: ``asyncmpc check``: validate a hosts.toml and show the deployment as a table."""

from __future__ import annotations

import argparse

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="hosts.toml", help="deployment file (default: hosts.toml)")


def command(args: argparse.Namespace) -> int:
    from asyncmpc.config import load_config
    from asyncmpc.errors import ConfigError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return fail("check", exc)
    rows = [("player", "role", "address", "data")]
    for p in config.players.values():
        address = f"{p.host}:{p.port}" if p.port is not None else f"{p.host} (dials out)"
        rows.append((p.name, p.role, address, p.csv or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    pr, tr = config.protocol, config.training
    tls = "off (loopback only)" if pr.plaintext else f"TLS 1.3, certificates in {config.tls_dir}"
    print(f"session {config.session!r}; {tls}; {tr.rounds} rounds on {tr.dataset}; {config.path} is valid")
    return 0
