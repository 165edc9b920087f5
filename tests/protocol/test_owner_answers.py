"""A data owner's own rule on what it computes (``protocol.releases.OwnerAnswers``): the newest
requests again, a new step, nothing else, in constant memory."""

from __future__ import annotations

import tracemalloc

import numpy as np

from asyncmpc.protocol.releases import MAX_ANSWERS, RERUN_WINDOW, STATS_STEP, OwnerAnswers, input_id
from asyncmpc.wire import messages as m


def update(step: int, value: float = 0.0) -> m.ModelUpdate:
    theta = np.full(4, value)
    return m.ModelUpdate(session="s", round_no=step + 1, theta=theta, mean=np.zeros(3), scale=np.ones(3), step=step)


def ask(answers: OwnerAnswers, request: m.ModelUpdate | m.StatsRequest) -> str | None:
    """Answer ``request`` if the rule allows: None, or the reason it was refused."""
    ident, step = input_id(request), OwnerAnswers.step_of(request)
    why = answers.refusal(ident, step)
    if why is None:
        answers.record(ident, step)
    return why


def test_the_newest_requests_are_answered_again_and_no_other() -> None:
    answers = OwnerAnswers()
    assert ask(answers, m.StatsRequest(session="s", round_no=0)) is None
    for step in range(1, 6):
        assert ask(answers, update(step)) is None
    for step in range(6 - RERUN_WINDOW, 6):  # a dispute's re-run, a resumed model owner
        assert ask(answers, update(step)) is None
    assert "at or below step 5" in (ask(answers, update(5 - RERUN_WINDOW)) or "")
    assert ask(answers, m.StatsRequest(session="s", round_no=0)) is not None


def test_a_new_model_at_an_old_step_is_refused() -> None:
    """Its id is new, but an honest model owner never goes back a step: the rule does not need
    every id ever answered to refuse it."""
    answers = OwnerAnswers()
    for step in range(10):
        assert ask(answers, update(step)) is None
    assert ask(answers, update(9, value=1.0)) is not None  # the newest step, another model
    assert ask(answers, update(3, value=2.0)) is not None
    assert ask(answers, update(10, value=2.0)) is None


def test_one_request_is_answered_at_most_max_answers_times() -> None:
    answers = OwnerAnswers()
    for _ in range(MAX_ANSWERS):
        assert ask(answers, update(7)) is None
    assert f"more than {MAX_ANSWERS} times" in (ask(answers, update(7)) or "")


def test_memory_is_constant_in_the_number_of_requests() -> None:
    """Python's allocated blocks after 1,000 and after 20,000 requests (each id 16 bytes and a
    dict entry: 19,000 kept would be over 1 MB)."""
    answers = OwnerAnswers()
    sizes = []
    tracemalloc.start()
    try:
        for step in range(20_000):
            assert ask(answers, update(step)) is None
            if step in (1_000, 19_999):
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert sizes[1] - sizes[0] < 10_000
    assert ask(answers, update(0)) is not None  # the first request is still refused
    assert STATS_STEP < 0
