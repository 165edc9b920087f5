"""``asyncmpc bench``: secure aggregation against the plaintext floor on this machine
(``asyncmpc.cli.benchmark``). The other benchmarks (faults, training accuracy, primitives, the CLI's own
costs) are scripts in ``scripts/``."""

from __future__ import annotations

import argparse

from asyncmpc.cli.common import fail

__all__ = ["add_arguments", "command"]

SERVERS = ["server-0", "server-1", "server-2"]


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The examples as written, and every option's default."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="parameters per model")
    parser.add_argument("--owners", type=int, nargs="+", default=[3, 10], help="numbers of data owners")
    parser.formatter_class = _Formatter
    parser.add_argument("--rounds", type=int, default=5, help="rounds per launch")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["secure", "plain"],
        choices=["secure", "plain", "secure-dp", "secure-norm"],
        help="secure-dp: noise inside the MPC; secure-norm: every round norm-checked (--norm-bound)",
    )
    parser.add_argument(
        "--norm-bound",
        type=float,
        default=1000.0,
        help="mode secure-norm's [protocol] norm_bound (model units); a synthetic gradient's norm is "
        "about sqrt(d / 3), 577 at d = 10^6",
    )
    parser.add_argument("--swarm-above", type=int, default=10, help="more owners than this run as one swarm process")
    parser.add_argument("--frac-bits", type=int, default=16, help="fixed-point fractional bits")
    parser.add_argument("--tls", choices=["off", "on", "both"], default="off", help="TLS on every connection")
    parser.add_argument("--repeat", type=int, default=1, help="launches per configuration, round times pooled")
    parser.add_argument(
        "--down-server", choices=SERVERS, help="never start this server: secure rounds run on the other two"
    )
    parser.add_argument("--mac-rounds", choices=["after-dispute", "always"], default="after-dispute")
    parser.add_argument("--mac-window", type=int, default=10, help="MAC rounds after a dispute")
    parser.add_argument(
        "--program",
        metavar="PLAYER=COMMAND",
        action="append",
        default=[],
        help="start PLAYER with COMMAND (split as a shell would) in place of `python -m asyncmpc run`, "
        "its options after it; e.g. a lying server: server-1='python tests/players/attacker.py --lie vector:ordinary'",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration and mode")


def command(args: argparse.Namespace) -> int:
    import json
    import shlex

    from asyncmpc.cli.benchmark import Plan, run_all, table
    from asyncmpc.errors import AsyncMpcError

    programs = []
    for spec in args.program:
        player, _, line = spec.partition("=")
        known = [*SERVERS, "model-owner"] + [f"data-owner-{i}" for i in range(max(args.owners))]
        if player not in known or not line.strip():
            return fail(
                "bench", ValueError(f"--program {spec!r}: expected PLAYER=COMMAND with one of {', '.join(known)}")
            )
        programs.append((player, tuple(shlex.split(line))))
    plan = Plan(
        ds=tuple(args.d),
        owners=tuple(args.owners),
        rounds=args.rounds,
        modes=tuple(args.modes),
        swarm_above=args.swarm_above,
        frac_bits=args.frac_bits,
        tls={"off": (False,), "on": (True,), "both": (False, True)}[args.tls],
        repeat=args.repeat,
        down_server=args.down_server,
        protocol=(f'mac_rounds = "{args.mac_rounds}"', f"mac_window = {args.mac_window}"),
        programs=tuple(programs),
        norm_bound=args.norm_bound,
    )
    try:
        results = run_all(plan)
    except AsyncMpcError as exc:
        return fail("bench", exc)
    for line in [json.dumps(r) for r in results] if args.json else table(results):
        print(line)
    return 0
