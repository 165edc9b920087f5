"""The test lanes and the fixtures every test folder shares.

Lanes: plain ``pytest`` runs every test not marked ``process`` (``addopts`` in pyproject.toml),
in seconds; ``scripts/test.sh`` runs them all (``-m ""``), in parallel. A test that starts a
process must say so with the ``process`` mark (on the test, or its module's ``pytestmark``):
an unmarked test that starts one fails, so the fast lane never starts a process.
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Players

pytest_plugins = ["pytester"]

PROCESS_ELSEWHERE = {
    "tests/unit/test_checkpoint.py::test_an_output_folder_that_cannot_be_made_is_one_line_and_status_2",
}
"""Process tests in modules that do not carry the mark themselves; it is added here."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("[")[0] in PROCESS_ELSEWHERE:
            item.add_marker(pytest.mark.process)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per CPU, as a process test spends much of its time waiting for
    its players (their deadlines, their start-up) rather than computing."""
    return 2 * (os.cpu_count() or 1)


# --- no process outside the process lane ---------------------------------------------------

_SPAWNERS: list[tuple[Any, str]] = [
    (subprocess.Popen, "_execute_child"),  # subprocess.run, os.popen, asyncio's subprocesses
    (_posixsubprocess, "fork_exec"),  # multiprocessing's spawn and forkserver
    *((os, name) for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system") if hasattr(os, name)),
]


class _NoProcess:
    """While active, starting a process fails the test (and is remembered, should the test
    swallow the failure or start it on another thread)."""

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.started: list[str] = []
        self.saved: list[tuple[Any, str, Any]] = []

    def refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: object, **kwargs: object) -> Any:
            self.started.append(what)
            pytest.fail(self.message(), pytrace=True)

        return refused

    def message(self) -> str:
        return (
            f"{self.nodeid} starts a process ({', '.join(sorted(set(self.started)))}) but is not marked "
            "`process`: add @pytest.mark.process (or put it in the module's pytestmark)"
        )

    def __enter__(self) -> _NoProcess:
        for owner, name in _SPAWNERS:
            self.saved.append((owner, name, getattr(owner, name)))
            setattr(owner, name, self.refuse(f"{getattr(owner, '__name__', owner)}.{name}"))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self.saved):
            setattr(owner, name, original)
        self.saved.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    return (yield from _guarded(item))


def _guarded(item: pytest.Item) -> Iterator[None]:
    if item.get_closest_marker("process") is not None:
        return (yield)
    with _NoProcess(item.nodeid) as guard:
        result = yield
    if guard.started:
        pytest.fail(guard.message(), pytrace=False)
    return result


# --- fixtures ------------------------------------------------------------------------------

LOG_TAIL = 40
"""Lines of each player's log shown in the report of a failed test."""

_PLAYERS = pytest.StashKey[Players]()


@pytest.fixture
def procs(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Players]:
    """Player processes for this test, their logs in ``tmp_path`` (NAME.log); every process is
    killed by PID when the test ends, also when it fails, and a failure's report ends with the
    last lines of each player's log."""
    players = Players(tmp_path)
    request.node.stash[_PLAYERS] = players
    try:
        yield players
    finally:
        players.kill_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    report: pytest.TestReport = yield
    players = item.stash.get(_PLAYERS, None)
    if report.when == "call" and report.failed and players is not None:
        for name in players.procs:
            lines = players.log(name).splitlines()[-LOG_TAIL:]
            report.sections.append((f"{name}.log, last {len(lines)} lines", "\n".join(lines)))
    return report
