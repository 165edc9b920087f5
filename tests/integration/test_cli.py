"""The ``asyncmpc`` command and its subcommands, each run as a subprocess."""

from __future__ import annotations

import contextlib
import csv
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.learning.training import load_sklearn
from tests.helpers import (
    ROOT,
    RUN_ROLE,
    Players,
    free_ports,
    hosts_toml,
    one_line,
    players,
    run_deployment,
    wait_until,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.process]

ASYNCMPC = [sys.executable, "-c", "import sys; from asyncmpc.cli import main; sys.exit(main())"]


def asyncmpc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ASYNCMPC, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


@pytest.mark.parametrize("command", [[], ["run"], ["local"], ["certs"], ["check"], ["bench"], ["predict"], ["report"]])
def test_every_help_is_complete_and_ends_with_an_example(command: list[str]) -> None:
    result = asyncmpc(*command, "--help")
    assert result.returncode == 0 and not result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith("example: asyncmpc ")


def test_check_prints_the_deployment_and_refuses_a_broken_file_in_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, owners=2, ports=[47300, 47301, 47302, 47303])
    result = asyncmpc("check", "--config", str(config))
    assert result.returncode == 0
    assert "server-1      compute-server  127.0.0.1:47302" in result.stdout
    assert "data-owner-1  data-owner      127.0.0.1 (dials out)" in result.stdout
    assert result.stdout.rstrip().endswith(f"{config} is valid")
    config.write_text(config.read_text().replace("[protocol]", "[protocol]\nfrac_bits = 99"))
    broken = asyncmpc("check", "--config", str(config))
    assert broken.returncode == 2
    assert one_line(broken).startswith(f"asyncmpc: check: {config}: [protocol] frac_bits")


def test_check_tells_what_a_privacy_table_comes_to(tmp_path: Path) -> None:
    from asyncmpc.config import load_config
    from asyncmpc.learning.privacy.plan import plan_for

    config = write_config(tmp_path, owners=2, training='dataset = "breast_cancer"\nrounds = 60')
    base = config.read_text()
    config.write_text(base + "\n[privacy]\nnoise_multiplier = 1.5\nsampling_rate = 0.2\nepsilon = 3.0\n")
    result = asyncmpc("check", "--config", str(config))
    assert result.returncode == 0, result.stderr
    plan = plan_for(load_config(config), 31)  # breast_cancer's logistic regression
    spent, gaussian = plan.accountant().epsilon(60), plan.accountant().gaussian_epsilon(60)
    assert result.stdout.rstrip().splitlines()[-1] == (
        "[privacy] per example: clip 1, sampling rate 0.2, noise multiplier 1.5000 for 31 parameters; "
        f"60 rounds spend epsilon {spent:.3f} at delta 1e-05 (Gaussian-equivalent {gaussian:.3f}); "
        f"the budget 3 stops training after {plan.rounds} rounds"
    )
    config.write_text(base + "\n[privacy]\nnoise_multiplier = 0.5\nepsilon = 0.01\n")
    broken = asyncmpc("check", "--config", str(config))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert one_line(broken).endswith(
        "one round already spends more than epsilon 0.01; raise noise_multiplier or epsilon"
    )


def test_certs_writes_a_ca_and_one_certificate_per_player_and_leaves_them_if_asked(tmp_path: Path) -> None:
    config = write_config(tmp_path, owners=2)
    result = asyncmpc("certs", "--config", str(config), "--dir", str(tmp_path / "c"))
    assert result.returncode == 0, result.stderr
    names = ["ca", "model-owner", "server-0", "server-1", "server-2", "data-owner-0", "data-owner-1"]
    assert all((tmp_path / "c" / f"{n}.pem").is_file() for n in names)
    before = (tmp_path / "c" / "ca.pem").read_bytes()
    again = asyncmpc("certs", "--config", str(config), "--dir", str(tmp_path / "c"), "--if-missing")
    assert again.returncode == 0 and (tmp_path / "c" / "ca.pem").read_bytes() == before
    missing = asyncmpc("certs", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml" in one_line(missing)


def write_table(path: Path, header: list[str] | None, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerows([header, *rows] if header is not None else rows)
    return path


def test_predict_gives_the_predictions_of_the_scikit_learn_model_of_a_run(tmp_path: Path, procs: Players) -> None:
    config = write_config(tmp_path, owners=3, training='dataset = "breast_cancer"\nrounds = 3')
    run_deployment(procs, config)
    model = tmp_path / "out" / "model.npz"
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data[:50]
    rows = [[*(repr(float(v)) for v in row), "?"] for row in x]  # the label column is left out
    table = write_table(tmp_path / "new.csv", [*data.feature_names, "label"], rows)
    result = asyncmpc("predict", str(model), str(table))
    assert result.returncode == 0, result.stderr
    expected = load_sklearn(model).predict(x)
    assert result.stdout.split() == [str(c) for c in expected]
    out = tmp_path / "p.txt"
    assert asyncmpc("predict", str(model), str(table), "--out", str(out)).returncode == 0
    assert out.read_text() == result.stdout


def test_predict_finds_the_models_columns_by_name_and_refuses_a_file_it_cannot_match(tmp_path: Path) -> None:
    from asyncmpc.config import parse_config
    from asyncmpc.learning.data import feature_names
    from asyncmpc.learning.training import ReferenceTrainer

    trainer = ReferenceTrainer(
        parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training='dataset = "breast_cancer"\nrounds = 10'))
    )
    model = tmp_path / "model.npz"
    trainer.run().save(model)
    assert trainer.split.test is not None
    x = trainer.split.test.x[:20]
    names = list(feature_names("breast_cancer", 30))
    expected = [str(c) for c in load_sklearn(model).predict(x)]
    assert [str(c) for c in load_sklearn(model).predict(x[:, ::-1])] != expected  # the order matters
    # reversed columns, and an id column the model does not take
    reordered = [[f"id{i}", *(repr(float(v)) for v in row[::-1])] for i, row in enumerate(x)]
    table = write_table(tmp_path / "reordered.csv", ["id", *names[::-1]], reordered)
    result = asyncmpc("predict", str(model), str(table))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected
    # a column missing
    keep = [names.index(n) for n in names if n != "worst area"]
    table = write_table(
        tmp_path / "missing.csv", [names[i] for i in keep], [[repr(float(row[i])) for i in keep] for row in x]
    )
    result = asyncmpc("predict", str(model), str(table))
    assert result.returncode == 2
    assert one_line(result) == (
        f"asyncmpc: predict: {table}: the header has no column 'worst area' (the model takes 30 features)"
    )
    # no header: refused, saying what to do; with --no-header, every line is a row
    table = write_table(tmp_path / "bare.csv", None, [[repr(float(v)) for v in row] for row in x])
    result = asyncmpc("predict", str(model), str(table))
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"asyncmpc: predict: {table}: line 1 is numbers, not a header naming the model's 30 ")
    assert "'mean radius', 'mean texture'" in line and line.endswith(
        "or pass --no-header if every line holds those features in that order"
    )
    result = asyncmpc("predict", str(model), str(table), "--no-header")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected  # all 20 rows, the first one too
    # a model.npz saved before feature names were kept goes by the number of columns, as before
    with np.load(model) as f:
        old = {k: f[k] for k in f.files if k != "features"}
    np.savez(tmp_path / "old.npz", **old)
    table = write_table(
        tmp_path / "plain.csv", [f"c{i}" for i in range(30)], [[repr(float(v)) for v in row] for row in x]
    )
    result = asyncmpc("predict", str(tmp_path / "old.npz"), str(table))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected
    narrow = write_table(tmp_path / "narrow.csv", ["a", "b"], [["1", "2"]])
    wrong = asyncmpc("predict", str(tmp_path / "old.npz"), str(narrow))
    assert wrong.returncode == 2
    assert (
        one_line(wrong)
        == f"asyncmpc: predict: {narrow}: 2 feature columns, but the model in {tmp_path / 'old.npz'} takes 30"
    )


def test_predict_works_for_an_mlp_and_for_a_plug_in_model_and_gives_probabilities(tmp_path: Path) -> None:
    from asyncmpc.config import parse_config
    from asyncmpc.learning.data import feature_names
    from asyncmpc.learning.training import ReferenceTrainer

    for spec in ["mlp", "examples.poly_softmax:build"]:
        training = f'dataset = "wine"\nmodel = "{spec}"\nrounds = 5'
        trainer = ReferenceTrainer(parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=training)))
        state = trainer.run()
        model = tmp_path / "model.npz"
        state.save(model)
        test = trainer.split.test
        assert test is not None
        rows = [[repr(float(v)) for v in row] for row in test.x]
        table = write_table(tmp_path / "new.csv", list(feature_names("wine", 13)), rows)
        result = asyncmpc("predict", str(model), str(table))
        assert result.returncode == 0, result.stderr
        expected = state.model.predict(state.theta, (test.x - state.mean) / state.scale)
        assert result.stdout.split() == [str(i) for i in expected]  # the data set's own labels
        out = tmp_path / "proba.csv"
        result = asyncmpc("predict", str(model), str(table), "--proba", "--out", str(out))
        if spec == "mlp":
            assert result.returncode == 0, result.stderr
            with open(out, newline="") as fh:
                header, *lines = list(csv.reader(fh))
            assert header == ["0", "1", "2"] and len(lines) == len(test.x)
            proba = np.array([[float(v) for v in line] for line in lines])
            np.testing.assert_allclose(proba, load_sklearn(model).predict_proba(test.x), rtol=1e-12, atol=1e-15)
        else:
            assert result.returncode == 2
            assert one_line(result) == (
                f"asyncmpc: predict: model plug-in {spec!r} has no predict_proba: it gives no probabilities"
            )


def test_the_model_owner_shows_a_progress_bar_on_a_terminal_and_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    import shlex

    if shutil.which("script") is None:
        pytest.skip("needs script(1) for a pseudo-terminal")
    rounds = 5
    for mode in ("terminal", "pipe"):
        folder = tmp_path / mode
        folder.mkdir()
        config = write_config(folder, owners=2, training=f'dataset = "breast_cancer"\nrounds = {rounds}')
        mo = [sys.executable, str(RUN_ROLE), "--config", str(config), "--name", "model-owner", "--out", str(folder)]
        with players(folder) as procs:
            for name in ["server-0", "server-1", "server-2", "data-owner-0", "data-owner-1"]:
                procs.start_role(config, name)
            # on a terminal, stderr is a pseudo-terminal (script(1)), as in an interactive shell
            argv = ["script", "-q", "-e", "-c", shlex.join(mo), "/dev/null"] if mode == "terminal" else mo
            result = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
            assert result.returncode == 0, result.stdout + result.stderr
        screen = result.stdout + result.stderr
        if mode == "terminal":
            assert (f"{rounds}/{rounds}" in screen and "round/s" in screen) or "s/round" in screen
            assert "loss " in screen and "owners, 3 servers" in screen
            assert f"round {rounds}/{rounds}: loss" not in screen  # the bar, not the lines
            assert "players connected" in screen  # the model owner's own line
            assert "connected to server-0" not in screen and "closed the connection" not in screen
        else:
            assert "owners, 3 servers" not in screen
            assert "connected to server-0" in screen  # a log keeps the network layer's lines
            for t in range(1, rounds + 1):
                assert f"round {t}/{rounds}: loss" in screen


def test_report_summarizes_a_run_and_plots_it_and_a_run_ends_with_the_same(tmp_path: Path, procs: Players) -> None:
    config = write_config(tmp_path, owners=3, training='dataset = "breast_cancer"\nrounds = 4')
    run_deployment(procs, config)
    out = tmp_path / "out"
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the run plotted itself
    (out / "training.png").unlink()
    result = asyncmpc("report", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("final test accuracy 0.") and ", scikit-learn pooled 0." in lines[0]
    assert "4 rounds of logreg" in lines and lines[-1] == f"wrote {out / 'training.png'}"
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = asyncmpc("report", str(tmp_path / "nothing"))
    assert empty.returncode == 2
    assert (
        one_line(empty)
        == f"asyncmpc: report: {tmp_path / 'nothing'}: no metrics.json or metrics.jsonl: not a run folder"
    )


def test_check_connect_tells_unreachable_from_refused_tls_and_its_probes_leave_no_warning(
    tmp_path: Path, procs: Players
) -> None:
    from asyncmpc.config import load_config
    from asyncmpc.net.pki import make_certs

    ports = free_ports(4)
    config = write_config(tmp_path, owners=2, tls=True, ports=ports)
    make_certs(load_config(config), tmp_path / "other")  # every player's files again, from another CA
    procs.start_role(config, "server-0", "--log-level", "DEBUG")
    wait_until(lambda: "listening on" in procs.log("server-0"), 60, "server-0 to listen")
    # at server-1's address, a listener with server-1's certificate from the other CA
    with _tls_listener(ports[2], tmp_path / "other", "server-1"):
        result = asyncmpc("check", "--config", str(config), "--connect", "--name", "data-owner-0", "--timeout", "2")
    assert result.returncode == 2
    assert f"server-0 at 127.0.0.1:{ports[1]}: reachable; TLS TLSv1.3, its certificate names server-0" in result.stdout
    assert (
        f"server-1 at 127.0.0.1:{ports[2]}: refused TLS: its certificate is not signed by this deployment's CA ("
        in result.stdout
    )
    assert f"model-owner at 127.0.0.1:{ports[0]}: unreachable: Connection refused" in result.stdout
    assert f"server-2 at 127.0.0.1:{ports[3]}: unreachable: Connection refused" in result.stdout
    assert one_line(result) == (
        "asyncmpc: check: from this host as data-owner-0, unreachable: model-owner, server-2; refused TLS: server-1"
    )
    # the probe is in server-0's log at DEBUG, and nothing of it above
    wait_until(lambda: "closed before its Hello (a probe)" in procs.log("server-0"), 30, "server-0 to see the probe")
    assert [line for line in procs.log("server-0").splitlines() if " WARNING " in line or " ERROR " in line] == []
    # a caller with another deployment's CA and files refuses server-0's certificate, and server-0 warns of it
    other = tmp_path / "hosts-other.toml"
    other.write_text(config.read_text().replace('dir = "certs"', 'dir = "other"'))
    stranger = asyncmpc("check", "--config", str(other), "--connect", "--name", "data-owner-0")
    refused = "its certificate is not signed by this deployment's CA (certificate signature failure)"
    assert f"server-0 at 127.0.0.1:{ports[1]}: refused TLS: {refused}" in stranger.stdout
    assert "refused TLS: server-0" in one_line(stranger)
    wait_until(lambda: " WARNING " in procs.log("server-0"), 30, "server-0 to warn of the stranger")
    assert "refused TLS connection from 127.0.0.1" in procs.log("server-0")
    needs_name = asyncmpc("check", "--config", str(config), "--connect")
    assert needs_name.returncode == 2 and "--connect needs --name" in one_line(needs_name)


@contextmanager
def _tls_listener(port: int, certs: Path, name: str) -> Iterator[None]:
    """A TLS listener on ``port`` presenting ``name``'s certificate from ``certs``, for one
    connection (its handshake may fail: the caller refusing the certificate is the point)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(60)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn, context.wrap_socket(conn, server_side=True):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(60)
        listener.close()


def test_the_deployment_file_is_taken_alone_or_as_config_and_two_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, owners=2, ports=[47310, 47311, 47312, 47313])
    alone = asyncmpc("check", str(config))
    assert alone.returncode == 0 and alone.stdout == asyncmpc("check", "--config", str(config)).stdout
    both = asyncmpc("check", str(config), "--config", str(tmp_path / "other.toml"))
    assert both.returncode == 2 and "two deployment files" in both.stderr


def test_bench_help_shows_every_default_and_local_takes_quiet() -> None:
    bench = asyncmpc("bench", "--help").stdout
    assert "(default: 5)" in bench and "(default: [3, 10])" in bench and "(default: 16)" in bench
    assert "(default: 5) (default: 5)" not in bench
    local = asyncmpc("local", "--help").stdout
    assert "-q, --quiet" in local


def test_check_imports_the_plug_ins_a_file_names(tmp_path: Path) -> None:
    """A model or data plug-in that cannot be imported is a check failure, in one line, not a
    run-time failure later."""
    for training in ('model = "no_such_module:build"', 'dataset = "no_such_module:load"\nclasses = ["a", "b"]'):
        config = write_config(tmp_path, owners=2, ports=[47320, 47321, 47322, 47323], training=training)
        result = asyncmpc("check", str(config))
        assert result.returncode == 2 and "cannot import no_such_module" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_check_reads_this_hosts_mnist_files_and_names_a_broken_one(tmp_path: Path) -> None:
    from tests.mnist_files import digits, write_npz

    training = 'dataset = "mnist"\ndataset_path = "data/mnist.npz"'
    config = write_config(tmp_path, owners=2, ports=[47330, 47331, 47332, 47333], training=training)
    data = tmp_path / "data"
    data.mkdir()
    write_npz(data / "mnist.npz", digits(60, seed=1), digits(20, seed=2))
    result = asyncmpc("check", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().splitlines()[-1] == (
        f"mnist in {data.resolve() / 'mnist.npz'}: 60 training and 20 test images of 784 pixels"
    )
    (data / "mnist.npz").write_bytes(b"half an archive")
    broken = asyncmpc("check", str(config))
    assert broken.returncode == 2
    assert one_line(broken).startswith(f"asyncmpc: check: {data.resolve() / 'mnist.npz'}: not a readable npz archive")
    # a compute server's host holds no data: its check does not look for the files
    server = asyncmpc("check", str(config), "--name", "server-0")
    assert server.returncode == 0 and "mnist in" not in server.stdout, server.stderr
