"""Four real processes over loopback TCP: three compute servers and one client."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, Players, write_config

pytestmark = [pytest.mark.integration, pytest.mark.process]

LENGTH = 1_000_000


def test_servers_add_two_shared_vectors_bit_for_bit(tmp_path: Path, procs: Players) -> None:
    config = write_config(tmp_path, owners=2, tls=True)
    out = tmp_path / "result.npz"
    for i in range(3):
        procs.start_role(config, f"server-{i}")
    procs.start(
        "client", [sys.executable, str(ROOT / "tests/integration/sum_client.py"), str(config), str(out), str(LENGTH)]
    )
    assert procs.wait("client", 120) == 0, procs.log("client")
    for i in range(3):
        assert procs.wait(f"server-{i}", 30) == 0, procs.log(f"server-{i}")
    with np.load(out) as data:
        x, y, total = data["x"], data["y"], data["total"]
        assert bool(data["cross_checked"])
    assert x.shape == (LENGTH,) and total.dtype == np.int64
    assert not np.array_equal(x, y)
    np.testing.assert_array_equal(total, x + y)
