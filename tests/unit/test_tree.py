"""The tree of DP-FTRL noise (``learning.privacy.tree``), against its definition."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncmpc.learning.privacy.accountant import TreeAccountant, tree_noise_multiplier_for
from asyncmpc.learning.privacy.plan import rounded_sensitivity
from asyncmpc.learning.privacy.tree import decomposition, depth, increment


def leaves(node: tuple[int, int]) -> range:
    level, index = node
    return range(index << level, (index + 1) << level)


@settings(deadline=None)
@given(st.integers(0, 1 << 14))
def test_a_prefix_is_the_disjoint_union_of_its_decomposition(prefix: int) -> None:
    covered = [leaf for node in decomposition(prefix) for leaf in leaves(node)]
    assert sorted(covered) == list(range(prefix))
    assert len(decomposition(prefix)) == bin(prefix).count("1")


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000))
def test_increments_add_up_to_every_prefix_and_each_node_comes_and_goes_once(steps: int) -> None:
    held: Counter[tuple[int, int]] = Counter()
    added: Counter[tuple[int, int]] = Counter()
    removed: Counter[tuple[int, int]] = Counter()
    for step in range(steps):
        plus, minus = increment(step)
        assert len(plus) == 1 and len(minus) <= depth(steps)
        held.update(plus)
        held.subtract(minus)
        added.update(plus)
        removed.update(minus)
        assert +held == Counter(decomposition(step + 1))  # the releases' prefix carries the tree's noise
    assert max(added.values()) == 1 and max(removed.values(), default=1) == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000))
def test_a_leaf_is_in_at_most_depth_nodes_and_a_prefix_is_at_most_depth_nodes(steps: int) -> None:
    used = {node for step in range(steps) for node in increment(step)[0]}
    per_leaf = Counter(leaf for node in used for leaf in leaves(node) if leaf < steps)
    assert max(per_leaf.values()) <= depth(steps)
    assert max(len(decomposition(j)) for j in range(steps + 1)) <= depth(steps)


def proven_tree_epsilon(z: float, steps: int, epochs: int, delta: float, l2: float, l1: float) -> float:
    """From the published formulas, not the code under test: depth * the Skellam RDP (Agarwal,
    Kairouz and Liu 2021, Theorem 3.5) per tree, times the trees, converted as dp-accounting
    converts (Canonne, Kamath and Steinke 2020, Proposition 12), at every integer order."""
    variance = (z * l2) ** 2
    levels = math.ceil(math.log2(steps + 1))
    best = math.inf
    for a in range(2, 257):
        node = a * l2 * l2 / (2 * variance) + min(
            ((2 * a - 1) * l2 * l2 + 6 * l1) / (4 * variance**2), 3 * l1 / (2 * variance)
        )
        rdp = epochs * levels * node
        eps = rdp + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, eps)
    return max(best, 0.0)


@pytest.mark.parametrize(("z", "steps", "epochs", "d"), [(4.0, 5, 12, 31), (8.0, 10, 10, 650), (1.5, 64, 3, 10_000)])
def test_the_tree_epsilon_is_the_published_bound(z: float, steps: int, epochs: int, d: int) -> None:
    l2, l1 = rounded_sensitivity(1.0, d, 16, 2)
    accountant = TreeAccountant(z, steps, 1e-5, l2, l1)
    assert accountant.epsilon(epochs) == pytest.approx(proven_tree_epsilon(z, steps, epochs, 1e-5, l2, l1), rel=2e-3)
    # the Skellam term is negligible here: the Gaussian-equivalent figure is dp-accounting's own
    assert accountant.gaussian_epsilon(epochs) == pytest.approx(accountant.epsilon(epochs), rel=1e-3)


def test_the_tree_calibration_proves_its_target_and_one_percent_less_noise_does_not() -> None:
    l2, l1 = rounded_sensitivity(1.0, 650, 16, 2)
    for target in (1.0, 3.0, 8.0):
        z = tree_noise_multiplier_for(target, 1e-5, 10, 10, l2, l1)
        assert TreeAccountant(z, 10, 1e-5, l2, l1).epsilon(10) <= target
        assert TreeAccountant(z * 0.99, 10, 1e-5, l2, l1).epsilon(10) > target


def test_a_servers_tree_noise_gives_every_prefix_its_decomposition_and_each_node_its_variance() -> None:
    from asyncmpc.config import parse_config
    from asyncmpc.learning.privacy.noise import TreeNoise
    from tests.helpers import hosts_toml

    cfg = parse_config(
        hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"')
        + "\n[privacy]\nnoise_multiplier = 2.0\n"
    )
    steps, shape = 6, (31,)
    noise = TreeNoise(cfg, steps)
    for tree in (0, 3):
        total = np.zeros(shape, dtype=np.int64)
        for leaf in range(steps):
            total += noise.draw(tree * steps + leaf + 1, 3, shape)
            want = sum(
                (noise.node(tree, node, 3, shape) for node in decomposition(leaf + 1)), np.zeros(shape, np.int64)
            )
            np.testing.assert_array_equal(total, want)  # exactly, in the ring
    big = noise.node(0, (2, 0), 3, (20_000,))
    assert np.var(big) == pytest.approx(noise.variance(3, 20_000), rel=0.05)
    assert not np.array_equal(noise.node(0, (0, 0), 3, shape), noise.node(1, (0, 0), 3, shape))
    assert not np.array_equal(noise.node(0, (0, 0), 3, shape), TreeNoise(cfg, steps).node(0, (0, 0), 3, shape))


def test_a_server_deals_each_position_once_in_increasing_order_and_within_the_budgets_trees() -> None:
    from asyncmpc.protocol.positions import Positions
    from asyncmpc.wire.messages import Refusal

    positions = Positions(5, lambda size: 2)  # two trees of five rounds
    assert positions.take(1, 31) is None and positions.take(4, 31) is None  # a skip is fine
    assert positions.take(4, 31)[0] is Refusal.RERUN and positions.take(2, 31)[0] is Refusal.RERUN  # type: ignore[index]
    assert positions.take(0, 31)[0] is Refusal.RERUN  # type: ignore[index]
    assert positions.take(10, 31) is None  # the last of tree 1
    assert positions.take(11, 31)[0] is Refusal.BUDGET  # type: ignore[index]


def test_an_owner_answers_each_leaf_of_its_tree_once_and_pays_once_per_tree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from asyncmpc.config import parse_config
    from asyncmpc.learning.privacy.budget import DataLedger
    from asyncmpc.learning.privacy.plan import plan_for
    from tests.helpers import hosts_toml

    text = hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"')
    cfg = parse_config(text + '\n[privacy]\nmechanism = "tree"\nepoch_steps = 4\nnoise_multiplier = 3.0\n')
    plan = plan_for(cfg, 31)
    ledger = DataLedger(plan, tmp_path, b"\x07" * 32)
    batches = []
    for position in (1, 2, 4):  # tree 0: leaves 0, 1, 3
        assert ledger.spend(position) is None
        batches.append(set(ledger.batch(100).tolist()))
    assert ledger.spend(3) is not None and ledger.spend(4) is not None  # leaves answered or passed
    one_tree = plan.accountant().round_rdp
    np.testing.assert_allclose(ledger.rdp, one_tree)  # three leaves of one tree: one tree's cost
    assert not (batches[0] & batches[1]) and not (batches[1] & batches[2])  # each example once per tree
    assert ledger.spend(5) is None  # tree 1: another tree, another cost, another order
    np.testing.assert_allclose(ledger.rdp, 2 * one_tree)
    again = DataLedger(plan, tmp_path, b"\x07" * 32)  # a restarted owner goes on with the same tree
    assert again.spend(5) is not None and again.spend(6) is None
