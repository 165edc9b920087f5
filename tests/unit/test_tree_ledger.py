"""A data owner's DP-FTRL tree goes on in a later run only under the settings it was paid for
(``budget.DataLedger``): another ``epoch_steps`` or less noise starts a new, paid tree."""

from __future__ import annotations

import numpy as np

from asyncmpc.config import parse_config
from asyncmpc.learning.privacy.budget import DataLedger
from asyncmpc.learning.privacy.plan import plan_for
from tests.helpers import hosts_toml

TEXT = hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"')


def _plan(steps: int, z: float):  # type: ignore[no-untyped-def]
    cfg = parse_config(TEXT + f'\n[privacy]\nmechanism = "tree"\nepoch_steps = {steps}\nnoise_multiplier = {z}\n')
    return plan_for(cfg, 31)


def test_a_tree_under_another_epoch_steps_is_a_new_paid_tree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = 100
    run1 = DataLedger(_plan(10, 3.0), tmp_path, b"\x07" * 32)
    released: list[set[int]] = []
    for position in range(1, 7):  # run 1 (T = 10): tree 0, leaves 0..5 -> order[0:60]
        assert run1.spend(position) is None
        released.append(set(run1.batch(n).tolist()))
    paid = run1.rdp.copy()
    run2 = DataLedger(_plan(20, 3.0), tmp_path, b"\x07" * 32)  # a later run, T = 20, same data
    assert run2.spend(7) is None  # tree 0 by number, but cut for T = 20: a new tree, paid
    again = set(run2.batch(n).tolist())  # order[30:35]: released in run 1 already (leaf 3 of 10)
    twice = any(again & r for r in released)
    assert not twice or np.all(run2.rdp > paid), f"examples {sorted(again)} released again, nothing paid"


def test_a_tree_paid_at_more_noise_does_not_go_on_at_less(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run1 = DataLedger(_plan(10, 8.0), tmp_path, b"\x07" * 32)
    assert run1.spend(1) is None
    run2 = DataLedger(_plan(10, 0.5), tmp_path, b"\x07" * 32)  # 16x less noise
    assert run2.spend(2) is None
    # the tree at z = 0.5 is paid for at z = 0.5
    assert np.all(run2.rdp >= run2.plan.accountant().round_rdp - 1e-12), "a tree released at z=0.5 charged at z=8"
