"""The lanes stay honest: a test that starts a process without the ``process`` mark fails, so
plain ``pytest`` (which leaves the marked ones out) never starts one."""

from __future__ import annotations

import pytest

from tests.helpers import ROOT

UNMARKED = """
import os, subprocess, sys, threading

def test_run():
    subprocess.run([sys.executable, "-c", "pass"])

def test_swallowed():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except BaseException:
        pass

def test_system():
    os.system("true")

def test_no_process():
    assert True
"""


def test_a_test_that_starts_a_process_without_the_mark_fails(pytester: pytest.Pytester) -> None:
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile(test_unmarked=UNMARKED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        ["*test_unmarked.py::test_run starts a process (Popen._execute_child) but is not marked*"]
    )
    result.stdout.fnmatch_lines(["*test_unmarked.py::test_system starts a process (os.system)*"])
