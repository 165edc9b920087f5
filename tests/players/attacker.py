#!/usr/bin/env python3
"""A player that attacks, for tests and benchmarks: ``asyncmpc run``'s options, and one of

    --lie WHAT:WHEN      a compute server that lies to the model owner (tests/attackers.py: Liar)
    --equivocate         a data owner that sends two servers different copies of its vector
    --withhold SERVER    a data owner that sends SERVER nothing
    --mask-trace FILE    a data owner that records the masks it used (not an attack)
    --lie-norm           a compute server that opens false norm-check values, signed as its own
    --poison KIND        a data owner that poisons every training round (tests/poisoners.py:
                         scale:F, fit:F, over, wrap or digests; fit:F stays within norm_bound)

The player is the real one; only what it sends is changed, on its way out.

    python tests/players/attacker.py --lie vector:every --config hosts.toml --name server-1
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from asyncmpc.cli import build_parser  # noqa: E402
from asyncmpc.cli import run as run_command  # noqa: E402
from asyncmpc.config import load_config  # noqa: E402
from tests.attackers import (  # noqa: E402
    Alter,
    Liar,
    MaskTrace,
    chain,
    equivocate,
    lie_in_norm_values,
    tampering_opener,
    withhold,
)
from tests.poisoners import install  # noqa: E402


def main(argv: list[str]) -> int:
    attack = argparse.ArgumentParser(add_help=False)
    attack.add_argument("--lie", metavar="WHAT:WHEN")
    attack.add_argument("--equivocate", action="store_true")
    attack.add_argument("--withhold", metavar="SERVER")
    attack.add_argument("--mask-trace", metavar="FILE")
    attack.add_argument("--poison", metavar="KIND")
    attack.add_argument("--lie-norm", action="store_true")
    ours, rest = attack.parse_known_args(argv)
    args = build_parser().parse_args(["run", *rest])
    config = load_config(args.config)
    model_owner = config.model_owner.name
    if ours.lie_norm:
        lie_in_norm_values()
    if ours.poison:
        p = config.protocol
        install(ours.poison, p.encoded_norm_bound, p.frac_bits)
    alters: list[Alter] = []
    if ours.lie:
        what, _, when = ours.lie.partition(":")
        liar = Liar(what, when or "every")
        alters.append(lambda to, msg: liar.alter(msg) if to == model_owner else msg)
    if ours.equivocate:
        alters.append(equivocate)
    if ours.withhold:
        alters.append(withhold(ours.withhold))
    if ours.mask_trace:
        trace = MaskTrace(Path(ours.mask_trace), args.name)
        alters.append(trace.observe)
    alter: Alter = chain(*alters) if alters else (lambda to, msg: msg)
    return run_command.command(args, opener=tampering_opener(alter))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
