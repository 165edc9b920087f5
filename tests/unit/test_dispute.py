"""The verdict on a MAC round's answers (``protocol.dispute``), with hypothesis: whatever one
server changes, by whatever difference, the sum is the honest one and only that server is named."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from asyncmpc.crypto.field import MAX_ABS, P
from asyncmpc.crypto.macs import MacKey, tag
from asyncmpc.crypto.rss import share
from asyncmpc.protocol.dispute import Answer, MacPolicy, resolve

small = st.lists(st.integers(-(MAX_ABS >> 4), MAX_ABS >> 4), min_size=1, max_size=12)
ring_changes = st.one_of(
    st.sampled_from([1 << 63, 1 << 62, P, 2 * P, -1, 1]),
    st.integers(-(1 << 63), (1 << 63) - 1).filter(lambda d: d != 0),
)


def answers(x: np.ndarray, key: MacKey) -> list[Answer]:
    """Honest full answers for the sum x: ring shares and field shares of its tag."""
    ring = share(x)
    t = tag(x, key)
    t0, t1 = (int.from_bytes(os.urandom(8), "little") % P for _ in range(2))
    f = [t0, t1, (t - t0 - t1) % P]
    return [Answer(i, ring[i].a, ring[i].b, f[i], f[(i + 1) % 3]) for i in range(3)]


def changed(a: Answer, what: str, d: int) -> Answer:
    ring_d = np.zeros_like(a.a)
    ring_d[0] = np.array([d % (1 << 64)], dtype=np.uint64).view(np.int64)[0]
    if what == "a":
        return Answer(a.server, a.a + ring_d, a.b, a.ma, a.mb)
    if what == "b":
        return Answer(a.server, a.a, a.b + ring_d, a.ma, a.mb)
    if what == "ma":
        return Answer(a.server, a.a, a.b, (a.ma + d) % P or 1, a.mb)
    return Answer(a.server, a.a, a.b, a.ma, (a.mb + d) % P or 1)


@given(small, st.integers(0, 2), st.sets(st.sampled_from(["a", "b", "ma", "mb"]), min_size=1), ring_changes)
def test_one_lying_server_is_named_and_the_sum_is_honest(vs: list[int], liar: int, what: set[str], d: int) -> None:
    x = np.array(vs, dtype=np.int64)
    key = MacKey.new()
    honest = answers(x, key)
    lied = list(honest)
    for w in sorted(what):
        lied[liar] = changed(lied[liar], w, d)
    if all(
        np.array_equal(p.a, q.a) and np.array_equal(p.b, q.b) and p.ma == q.ma and p.mb == q.mb
        for p, q in zip(honest, lied, strict=True)
    ):
        return  # a field change by a multiple of p is no change
    verdict = resolve(lied, key)
    assert verdict.cheater == liar
    assert verdict.total is not None and np.array_equal(verdict.total, x)


@given(small)
def test_honest_answers_agree_and_name_no_one(vs: list[int]) -> None:
    x = np.array(vs, dtype=np.int64)
    key = MacKey.new()
    verdict = resolve(answers(x, key), key)
    assert verdict.agreed and verdict.cheater is None and np.array_equal(verdict.total, x)
    two = resolve(answers(x, key)[:2], key)
    assert not two.agreed and two.cheater is None and np.array_equal(two.total, x)


def test_a_two_server_round_refuses_a_changed_once_held_component_and_names_no_one() -> None:
    x = np.arange(5, dtype=np.int64)
    key = MacKey.new()
    a0, a1, _ = answers(x, key)  # component 0 is server 0's a only; component 1 is held by both
    verdict = resolve([changed(a0, "a", 7), a1], key)
    assert verdict.total is None and verdict.cheater is None


def test_the_mac_window_doubles_with_each_dispute_and_ends_with_an_exclusion() -> None:
    policy = MacPolicy(window=3)
    assert not policy.next_is_mac()
    policy.disputed()
    assert [policy.next_is_mac() for _ in range(5)] == [True] * 4 + [False]  # the re-run and 3
    policy.disputed()
    assert sum(policy.next_is_mac() for _ in range(10)) == 7  # the re-run and 6
    policy.disputed()
    policy.excluded()
    assert not policy.next_is_mac()
    assert MacPolicy(always=True).next_is_mac()
