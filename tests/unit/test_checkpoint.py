"""The model owner's checkpoint: atomic writes, a faithful round trip, clear refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from asyncmpc.checkpoint import CHECKPOINT, atomic_write, load_checkpoint, save_checkpoint
from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError
from asyncmpc.logreg import Model
from asyncmpc.training import ModelOwnerState
from tests.helpers import hosts_toml


def config(training: str = "rounds = 5"):  # type: ignore[no-untyped-def]
    return parse_config(hosts_toml(3, training=training), "test.toml")


def test_a_checkpoint_round_trips_the_model_and_optimizer_state(tmp_path: Path) -> None:
    cfg = config()
    state = ModelOwnerState(cfg, Model(4, 2), ("a", "b"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        state.apply(rng.normal(size=state.model.size + 1), 3)
    save_checkpoint(tmp_path, cfg, 3, state.state(), {"note": "x"})
    ckpt = load_checkpoint(tmp_path, config("rounds = 50"))  # more rounds: still resumable
    assert ckpt is not None and ckpt.round == 3 and ckpt.meta == {"note": "x"}
    again = ModelOwnerState(cfg, Model(4, 2), ("a", "b"))
    again.restore(ckpt.arrays)
    grad = rng.normal(size=state.model.size + 1)
    np.testing.assert_array_equal(state.theta, again.theta)
    state.apply(grad, 3)
    again.apply(grad, 3)
    np.testing.assert_array_equal(state.theta, again.theta)  # Adam's moments came back too
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary file left


def test_no_checkpoint_is_none_and_other_settings_are_refused_by_name(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path, config()) is None
    save_checkpoint(tmp_path, config(), 1, {"theta": np.zeros(3)}, {})
    expected = r"settings \(training\.learning_rate was 0\.1, the config says 0\.5\); use --fresh"
    with pytest.raises(ConfigError, match=expected):
        load_checkpoint(tmp_path, config("learning_rate = 0.5"))


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match=r"cannot read the checkpoint .*use --fresh"):
        load_checkpoint(tmp_path, config())


def test_an_interrupted_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))

    def broken(fh):  # type: ignore[no-untyped-def]
        fh.write(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"


def test_an_output_folder_that_cannot_be_made_is_one_line_and_status_2(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import RUN_ROLE

    cfg = tmp_path / "hosts.toml"
    cfg.write_text(hosts_toml(3, training="rounds = 1"))
    (tmp_path / "file").write_text("not a folder")
    argv = [sys.executable, str(RUN_ROLE), "--config", str(cfg), "--name", "model-owner"]
    proc = subprocess.run([*argv, "--out", str(tmp_path / "file" / "sub")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("cannot create the output folder: Not a directory")
    assert "Traceback" not in proc.stderr
