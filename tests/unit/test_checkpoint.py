"""The model owner's checkpoint: atomic writes, a faithful round trip, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import parse_config
from asyncmpc.errors import ConfigError
from asyncmpc.learning.checkpoint import (
    CHECKPOINT,
    ROUND_LOG,
    RoundLog,
    append_round,
    atomic_write,
    checkpoint_header,
    load_checkpoint,
    read_rounds,
    rewrite_rounds,
    save_checkpoint,
    write_metrics,
)
from asyncmpc.learning.models import build_model
from asyncmpc.learning.training import ModelOwnerState
from tests.helpers import hosts_toml


def config(training: str = "rounds = 5"):  # type: ignore[no-untyped-def]
    return parse_config(hosts_toml(3, training=training), "test.toml")


def test_a_checkpoint_round_trips_the_model_and_optimizer_state(tmp_path: Path) -> None:
    cfg = config()
    state = ModelOwnerState(cfg, build_model("logreg", 4, 2, {}, 0), ("a", "b"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        state.apply(rng.normal(size=state.model.size + 1), 3)
    save_checkpoint(tmp_path, cfg, 3, state.state(), {"note": "x"})
    ckpt = load_checkpoint(tmp_path, config("rounds = 50"))  # more rounds: still resumable
    assert ckpt is not None and ckpt.round == 3 and ckpt.meta == {"note": "x"}
    again = ModelOwnerState(cfg, build_model("logreg", 4, 2, {}, 0), ("a", "b"))
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


def test_a_checkpoint_made_under_other_privacy_settings_is_refused_by_name(tmp_path: Path) -> None:
    """The ledger's releases were spent under the checkpoint's [privacy]: another noise
    multiplier would make the accountant misreport them."""

    def private(z: float):  # type: ignore[no-untyped-def]
        text = hosts_toml(3, training='dataset = "breast_cancer"') + f"\n[privacy]\nnoise_multiplier = {z}\n"
        return parse_config(text, "test.toml")

    save_checkpoint(tmp_path, private(1.0), 1, {"theta": np.zeros(3)}, {})
    assert load_checkpoint(tmp_path, private(1.0)) is not None
    with pytest.raises(ConfigError, match=r"privacy\.noise_multiplier was 1\.0, the config says 2\.0"):
        load_checkpoint(tmp_path, private(2.0))
    with pytest.raises(ConfigError, match="privacy was"):
        load_checkpoint(tmp_path, parse_config(hosts_toml(3, training='dataset = "breast_cancer"'), "test.toml"))


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


def test_the_round_log_grows_by_a_line_and_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    assert read_rounds(tmp_path) == []
    for t in range(1, 4):
        append_round(tmp_path, {"round": t, "contributors": ["data-owner-0"]})
    assert [r["round"] for r in read_rounds(tmp_path)] == [1, 2, 3]
    with open(tmp_path / ROUND_LOG, "ab") as fh:
        fh.write(b'{"round": 4, "contrib')  # the process died mid-line
    assert [r["round"] for r in read_rounds(tmp_path)] == [1, 2, 3]
    rewrite_rounds(tmp_path, read_rounds(tmp_path)[:2])  # a resume after round 2 keeps two rows
    append_round(tmp_path, {"round": 3})
    assert [r["round"] for r in read_rounds(tmp_path)] == [1, 2, 3]
    (tmp_path / ROUND_LOG).write_bytes(b'{"round": 1}\nnot json\n{"round": 3}\n')
    with pytest.raises(json.JSONDecodeError):
        read_rounds(tmp_path)  # damage in the middle is not a torn end: said, not hidden


def test_the_checkpoint_header_is_read_without_the_arrays(tmp_path: Path) -> None:
    assert checkpoint_header(tmp_path) is None
    save_checkpoint(tmp_path, config(), 7, {"theta": np.zeros(3)}, {"resumed_after": [5]})
    header = checkpoint_header(tmp_path)
    assert header is not None and header["round"] == 7 and header["meta"] == {"resumed_after": [5]}


def test_a_round_log_keeps_its_rows_on_disk_and_a_resume_keeps_those_up_to_the_checkpoint(tmp_path: Path) -> None:
    log = RoundLog.restart(tmp_path)
    assert len(log) == 0 and list(log) == [] and (tmp_path / ROUND_LOG).read_bytes() == b""
    for t in range(1, 6):
        log.append({"round": t, "loss": 1.0 / t})
    assert len(log) == 5 and [r["round"] for r in log] == [1, 2, 3, 4, 5]
    assert log[0]["round"] == 1 and log[-1]["round"] == 5 and [r["round"] for r in log[1:3]] == [2, 3]
    with pytest.raises(IndexError):
        log[5]
    with open(tmp_path / ROUND_LOG, "ab") as fh:
        fh.write(b'{"round": 6, "lo')  # the process died mid-line
    resumed = RoundLog.restart(tmp_path, 3)  # the checkpoint says round 3: rounds 4 and 5 are redone
    assert len(resumed) == 3 and read_rounds(tmp_path) == list(resumed) == [
        {"round": t, "loss": 1.0 / t} for t in (1, 2, 3)
    ]
    assert len(RoundLog.restart(tmp_path)) == 0 and read_rounds(tmp_path) == []  # a fresh start


def test_metrics_json_is_written_as_json_dumps_would_with_the_rows_streamed_from_the_round_log(tmp_path: Path) -> None:
    rows = [
        {"round": 1, "contributors": ["data-owner-0", "data-owner-1"], "loss": 0.5, "servers": ["server-0"]},
        {"round": 2, "contributors": [], "loss": None, "skipped": 'no "sum"\nat all', "nan": float("nan")},
        {"round": 3, "nested": {"a": [1, {"b": []}], "c": {}}, "text": "caf\u00e9"},
    ]
    log = RoundLog.restart(tmp_path)
    for row in rows:
        log.append(row)
    (tmp_path / "none").mkdir()
    for rounds in (log, RoundLog.restart(tmp_path / "none")):
        metrics = {"dataset": "x", "parameters": 31, "rounds": rounds, "excluded_servers": {}, "end": [1.5, None]}
        write_metrics(tmp_path / "metrics.json", metrics)
        expected = json.dumps({**metrics, "rounds": list(rounds)}, indent=2) + "\n"
        assert (tmp_path / "metrics.json").read_text() == expected
    write_metrics(tmp_path / "metrics.json", {})
    assert (tmp_path / "metrics.json").read_text() == "{}\n"
