"""``asyncmpc bench`` as a smoke test: it completes, and the secure mean equals the plain one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.process]

BENCH = [sys.executable, "-m", "asyncmpc", "bench"]


def bench(*args: str) -> list[dict]:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, "-m", "asyncmpc", "bench", "--json", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_bench_small_secure_equals_plain_within_fixed_point_precision() -> None:
    rounds, lr, frac_bits = 2, 0.1, 16
    runs = {r["mode"]: r for r in bench("--d", "10000", "--owners", "3", "--rounds", str(rounds))}
    assert set(runs) == {"secure", "plain"}
    secure, plain = runs["secure"], runs["plain"]
    # each round's mean is exact up to the encoding's rounding (half a unit in the last place)
    assert secure["max_abs_error_vs_exact_mean"] <= rounds * lr * 2.0 ** -(frac_bits + 1) + 1e-12
    assert plain["max_abs_error_vs_exact_mean"] <= 1e-12
    assert secure["secure_over_plain"] == plain["secure_over_plain"] > 0
    # seed-compressed sharing: an owner uploads two vectors, not six
    assert secure["upload_per_owner_bytes_per_round"] <= 2.1 * 8 * 10_000
    assert set(secure["roles"]) == {"server", "model-owner", "data-owner"}
    assert all(role["peak_rss_bytes"] > 0 for role in secure["roles"].values())


def test_bench_with_noise_inside_the_mpc_reports_its_cost_and_its_noise() -> None:
    rounds, d = 3, 2000
    runs = {
        r["mode"]: r
        for r in bench("--d", str(d), "--owners", "3", "--rounds", str(rounds), "--modes", "secure", "secure-dp")
    }
    assert runs["secure-dp"]["dp_over_secure"] > 0
    # noise multiplier 1, clip 1: each round's sum carries noise of standard deviation about
    # sqrt(1.5) (in model units), divided by 3 owners, times the learning rate 0.1, over 3 rounds
    error = runs["secure-dp"]["max_abs_error_vs_exact_mean"]
    assert 0.01 < error < 0.1 * 3 * 1.3 * 6 / 3
    assert runs["secure"]["max_abs_error_vs_exact_mean"] < 1e-4


def test_bench_with_the_norm_check_accepts_every_owner_and_reports_its_cost() -> None:
    rounds, d, bound = 2, 2000, 100.0
    runs = {
        r["mode"]: r
        for r in bench(
            *("--d", str(d), "--owners", "3", "--rounds", str(rounds)),
            *("--modes", "secure", "secure-norm", "--norm-bound", str(bound)),
        )
    }
    checked, unchecked = runs["secure-norm"], runs["secure"]
    assert checked["norm_bound"] == bound and "norm_bound" not in unchecked
    # uniform in [-1, 1): a norm of about sqrt(d / 3), under the bound, so no owner is clipped
    assert 20 < checked["largest_owner_norm"] < 30
    assert checked["round_kinds"]["norm_failed"] == 0 and checked["round_kinds"]["short"] == 0
    assert checked["max_abs_error_vs_exact_mean"] <= rounds * 0.1 * 2.0**-17 + 1e-12
    assert checked["norm_over_secure"] > 0
    # the field components go to every server whole (no seeds), with the witness and proofs
    assert checked["norm_upload_over_secure"] > 3
    assert checked["upload_per_owner_bytes_per_round"] > 3 * unchecked["upload_per_owner_bytes_per_round"]


def test_bench_refuses_a_norm_bound_the_check_cannot_serve_in_one_line() -> None:
    proc = subprocess.run(
        [*BENCH, "--d", "1000", "--owners", "3", "--modes", "secure-norm", "--norm-bound", "5000"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "[protocol] norm_bound: 5000.0 is outside what the check can serve" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_pooled_launches_count_their_round_kinds_together() -> None:
    from asyncmpc.cli.benchmark import pooled

    def launch(secs: list[float], failed: int, excluded: list[str]) -> dict:  # type: ignore[type-arg]
        kinds = {"disputed": 1, "mac": 1, "excluded": excluded, "norm_failed": failed, "short": failed}
        role = {"peak_rss_bytes": 1, "bytes_sent": 2, "bytes_received": 3, "cpu_seconds": 0.5, "processes": 3}
        return {
            "all_round_seconds": secs,
            "round_kinds": kinds,
            "wall_seconds": 1.0,
            "max_abs_error_vs_exact_mean": 0.0,
            "upload_per_owner_bytes_per_round": 8.0,
            "roles": {"data-owner": role},
        }

    out = pooled([launch([0.1, 0.3], 0, []), launch([0.2], 2, ["server-1"])])
    assert out["round_kinds"] == {"disputed": 2, "mac": 2, "excluded": ["server-1"], "norm_failed": 2, "short": 2}
    assert out["round_seconds"] == {"median": 0.2, "min": 0.1, "max": 0.3} and out["launches"] == 2


def test_bench_swarm_of_owners_in_one_process() -> None:
    (run,) = bench("--d", "1000", "--owners", "40", "--rounds", "2", "--modes", "secure", "--swarm-above", "10")
    assert run["swarm"] and run["roles"]["data-owner"]["processes"] == 1
    assert run["max_abs_error_vs_exact_mean"] <= 2 * 0.1 * 2.0**-17 + 1e-12


def test_bench_refuses_a_program_for_no_player_in_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asyncmpc", "bench", "--owners", "3", "--program", "server-9=python x.py"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "asyncmpc: bench: --program 'server-9=python x.py': expected PLAYER=COMMAND with one of"
    )
    assert proc.stderr.count("\n") == 1


LIAR_RUN = ["--d", "1000", "--owners", "3", "--rounds", "6", "--modes", "secure", "--mac-window", "0"]


def test_bench_runs_a_player_as_another_program_a_lying_server_here() -> None:
    program = f"{sys.executable} tests/players/attacker.py --lie vector:ordinary"
    proc = subprocess.run(
        [*BENCH, *LIAR_RUN, "--program", f"server-1={program}", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    kinds = json.loads(proc.stdout.splitlines()[0])["round_kinds"]
    assert kinds["disputed"] == 6 and kinds["mac"] == 6 and kinds["excluded"] == []  # every round re-run, no one out
