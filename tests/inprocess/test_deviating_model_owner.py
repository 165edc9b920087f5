"""A model owner that strays from the protocol under [privacy], scripted over the in-process
transport around the real roles: what the data owners and honest servers release stays what
the noise protects."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from asyncmpc.config import Config, load_config
from asyncmpc.wire import messages as m
from tests.helpers import hosts_toml, write_config
from tests.inprocess.deploy import MO, run_deployment

OWNERS = ("data-owner-0", "data-owner-1", "data-owner-2")


def private_config(tmp_path: Path, rounds: int = 6) -> Config:
    protocol = "server_timeout = 0.5\nround_timeout = 4.0"
    text = hosts_toml(3, protocol=protocol, training=f'dataset = "breast_cancer"\nrounds = {rounds}')
    return load_config(write_config(tmp_path, text + "\n[privacy]\nnoise_multiplier = 2.0\nsampling_rate = 0.3\n"))


class Seen:
    """What went over the wire, by kind: (sender, receiver, message)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, m.Message]] = []

    def of(self, kind: type[m.Message]) -> list[tuple[str, str, m.Message]]:
        return [s for s in self.sent if isinstance(s[2], kind)]


def test_a_statistics_request_under_privacy_is_declined_by_every_owner(tmp_path: Path) -> None:
    """The model owner asks round 2 for ``[n, sum x, sum x^2]`` of every owner's raw data,
    which the gradient's noise would not cover: every owner declines, and shares nothing."""
    seen = Seen()

    def ask_statistics(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and isinstance(msg, m.ModelUpdate) and msg.round_no == 2:
            msg = m.StatsRequest(session=msg.session, round_no=2, servers=msg.servers, mac_key=msg.mac_key)
        seen.sent.append((sender, to, msg))
        return msg

    outcome = run_deployment(private_config(tmp_path), tmp_path / "out", tamper=ask_statistics)
    declines = [(s, msg) for s, _, msg in seen.of(m.Decline) if msg.round_no == 2]
    assert sorted(s for s, _ in declines) == list(OWNERS)
    assert all(isinstance(d, m.Decline) and d.code is m.Refusal.PRIVATE for _, d in declines)
    assert not [x for x in seen.of(m.InputShare) if x[2].round_no == 2], "no owner shared anything for it"
    assert not [x for x in seen.of(m.ResultShare) if x[2].round_no == 2], "no server released anything for it"
    assert outcome.errors == {} and len(outcome.metrics["rounds"]) == 6


def test_a_round_opened_at_another_size_releases_nothing(tmp_path: Path) -> None:
    """The model owner opens round 3 at the servers for one element more than the model has:
    the owners share their clipped gradients of the model's size only, which do not fit, so
    no server releases a sum for that round."""
    seen = Seen()

    def resize(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and isinstance(msg, m.OpenRound) and msg.round_no == 3:
            msg = dataclasses.replace(msg, shape=(msg.shape[0] + 1,))
        seen.sent.append((sender, to, msg))
        return msg

    outcome = run_deployment(private_config(tmp_path), tmp_path / "out", tamper=resize)
    assert seen.of(m.InputShare), "the owners answered the other rounds"
    assert not [x for x in seen.of(m.ResultShare) if x[2].round_no == 3]
    assert outcome.errors == {} and len(outcome.metrics["rounds"]) == 6


def budget_config(tmp_path: Path, rounds: int = 12) -> tuple[Config, int]:
    """A deployment whose [privacy] epsilon allows exactly ``allowed`` releases."""
    from asyncmpc.learning.privacy.plan import plan_for

    base = private_config(tmp_path, rounds)
    accountant = plan_for(base, 31).accountant()
    allowed = 4
    budget = (accountant.epsilon(allowed) + accountant.epsilon(allowed + 1)) / 2
    path = Path(base.path)
    path.write_text(path.read_text() + f"epsilon = {budget!r}\n")
    return load_config(path), allowed


def answers_by_owner(seen: Seen) -> dict[str, int]:
    """How many requests each owner answered (its shares to server-0)."""
    counts = dict.fromkeys(OWNERS, 0)
    for sender, to, _ in seen.of(m.InputShare):
        if to == "server-0":
            counts[sender] += 1
    return counts


def test_a_model_owner_that_resets_its_ledger_gets_nothing_more_from_the_owners(tmp_path: Path) -> None:
    """Run 1 spends the budget; run 2 starts afresh (a new output folder: its ledger empty,
    every server's count from zero). The owners keep their own ledgers, across runs: they
    decline every request of run 2, so no one's data is released more than the budget allows."""
    config, allowed = budget_config(tmp_path)
    seen = Seen()

    def watch(sender: str, to: str, msg: m.Message) -> m.Message:
        seen.sent.append((sender, to, msg))
        return msg

    first = run_deployment(config, tmp_path / "run-1", tamper=watch)
    assert len(first.metrics["rounds"]) == allowed and answers_by_owner(seen) == dict.fromkeys(OWNERS, allowed)
    seen.sent.clear()
    second = run_deployment(config, tmp_path / "run-2", tamper=watch)
    assert answers_by_owner(seen) == dict.fromkeys(OWNERS, 0)
    assert not seen.of(m.ResultShare), "no server released a sum"
    codes = {msg.code for _, _, msg in seen.of(m.Decline) if isinstance(msg, m.Decline)}
    assert codes == {m.Refusal.LEDGER}
    assert all(r.get("skipped") or not r["contributors"] for r in second.metrics["rounds"])


def test_a_model_owner_that_repeats_a_step_gets_independent_releases_within_the_budget(tmp_path: Path) -> None:
    """Every request asks for step 1 with the first model: each owner answers, each time with
    a fresh sample under fresh noise (one more release to its ledger), until its own ledger
    allows no more or the same request has been answered ``MAX_ANSWERS`` times."""
    config, allowed = budget_config(tmp_path, rounds=30)
    seen = Seen()
    first: dict[str, m.ModelUpdate] = {}

    def repeat(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and isinstance(msg, m.ModelUpdate):
            kept = first.setdefault(to, msg)
            msg = dataclasses.replace(msg, theta=kept.theta, mean=kept.mean, scale=kept.scale, step=kept.step)
        seen.sent.append((sender, to, msg))
        return msg

    text = Path(config.path).read_text()
    ignoring = tmp_path / "model-owner.toml"  # the model owner keeps no budget
    ignoring.write_text(text[: text.index("epsilon = ")])
    run_deployment(config, tmp_path / "out", tamper=repeat, model_owner_config=load_config(ignoring))
    assert answers_by_owner(seen) == dict.fromkeys(OWNERS, allowed)  # the owners' own budget


def test_a_request_that_does_not_fit_an_owners_data_is_declined_without_its_shapes(tmp_path: Path) -> None:
    """Under [privacy] a decline says nothing of the owner's data (its shapes may count its
    examples): the model owner sends round 2's model one parameter short."""
    seen = Seen()

    def shorten(sender: str, to: str, msg: m.Message) -> m.Message:
        if sender == MO and isinstance(msg, m.ModelUpdate) and msg.round_no == 2:
            msg = dataclasses.replace(msg, theta=msg.theta[:-1])
        seen.sent.append((sender, to, msg))
        return msg

    run_deployment(private_config(tmp_path), tmp_path / "out", tamper=shorten)
    declines = [msg for _, _, msg in seen.of(m.Decline) if msg.round_no == 2]
    assert declines and all(
        isinstance(d, m.Decline) and d.reason == "the request does not fit its data" for d in declines
    )
