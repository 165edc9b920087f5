"""MNIST from the files a user downloads: IDX (raw and gzipped) and Keras' mnist.npz, made
here in small; every broken file is one ConfigError naming it."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from asyncmpc.config import load_config, parse_config
from asyncmpc.config.shared import first_difference, shared_settings
from asyncmpc.errors import ConfigError
from asyncmpc.learning.data import load_split, owner_data
from asyncmpc.learning.mnist import Mnist, load_mnist
from tests.helpers import hosts_toml
from tests.mnist_files import digits, idx_bytes, write_idx, write_npz

TRAIN, TEST = digits(120, seed=1), digits(40, seed=2)


def assert_as_written(mnist: Mnist) -> None:
    np.testing.assert_array_equal(mnist.x_train, TRAIN[0].reshape(120, 784))
    np.testing.assert_array_equal(mnist.y_train, TRAIN[1])
    np.testing.assert_array_equal(mnist.x_test, TEST[0].reshape(40, 784))
    np.testing.assert_array_equal(mnist.y_test, TEST[1])
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64


@pytest.mark.parametrize("gz", [False, True])
def test_the_idx_files_load_as_written_raw_or_gzipped(tmp_path: Path, gz: bool) -> None:
    write_idx(tmp_path, TRAIN, TEST, gz=gz)
    assert_as_written(load_mnist(str(tmp_path)))


def test_the_idx_files_as_some_mirrors_name_them_load_too(tmp_path: Path) -> None:
    for path in write_idx(tmp_path, TRAIN, TEST).values():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))  # train-images.idx3-ubyte
    assert_as_written(load_mnist(str(tmp_path)))


def test_keras_mnist_npz_loads_as_written(tmp_path: Path) -> None:
    assert_as_written(load_mnist(str(write_npz(tmp_path / "mnist.npz", TRAIN, TEST))))


def _rewrite(name: str, change: Callable[[bytes], bytes]) -> Callable[[dict[str, Path]], None]:
    def edit(paths: dict[str, Path]) -> None:
        paths[name].write_bytes(change(paths[name].read_bytes()))

    return edit


IDX_BROKEN = [
    (
        _rewrite("train-images-idx3-ubyte", lambda b: idx_bytes(TRAIN[1])),
        r"train-images-idx3-ubyte: not an IDX file of images \(magic number 0x00000801, expected 0x00000803\)$",
    ),
    (
        _rewrite("t10k-labels-idx1-ubyte", lambda b: b"hello"),
        r"t10k-labels-idx1-ubyte: not an IDX file of labels \(magic number 0x68656c6c, expected 0x00000801\)$",
    ),
    (
        _rewrite("train-images-idx3-ubyte", gzip.compress),
        r"train-images-idx3-ubyte: not an IDX file of images \(magic number 0x1f8b.*\) \(it is gzipped: name it .gz\)$",
    ),
    (
        _rewrite("train-images-idx3-ubyte", lambda b: b[:-10]),
        r"train-images-idx3-ubyte: truncated: its header gives 120 images of 28x28 pixels \(94096 bytes\), "
        r"the file has 94086$",
    ),
    (
        _rewrite("train-images-idx3-ubyte", lambda b: b[:10]),
        r"train-images-idx3-ubyte: truncated: 10 bytes, shorter than its 16-byte header$",
    ),
    (
        _rewrite("t10k-images-idx3-ubyte", lambda b: b + b"\0\0\0"),
        r"t10k-images-idx3-ubyte: 3 bytes after the 40 images of 28x28 pixels its header gives$",
    ),
    (
        _rewrite("train-labels-idx1-ubyte", lambda b: idx_bytes(TRAIN[1][:119])),
        r"train-labels-idx1-ubyte: 119 labels, but .*train-images-idx3-ubyte has 120 images$",
    ),
    (
        lambda paths: paths["t10k-labels-idx1-ubyte"].unlink(),
        r"no t10k-labels-idx1-ubyte \(nor t10k-labels-idx1-ubyte.gz\): MNIST is the four files train-images-idx3",
    ),
    (
        _rewrite("t10k-labels-idx1-ubyte", lambda b: idx_bytes(np.where(TEST[1] == 3, 12, TEST[1]).astype(np.uint8))),
        r"t10k-labels-idx1-ubyte: label number \d+ is 12, not a digit 0..9$",
    ),
    (
        _rewrite("t10k-images-idx3-ubyte", lambda b: idx_bytes(TEST[0][:, :20, :20].copy())),
        r"t10k-images-idx3-ubyte: images of 20x20 pixels, but .*train-images-idx3-ubyte has 28x28$",
    ),
    (
        _rewrite("train-labels-idx1-ubyte", lambda b: idx_bytes(TRAIN[1][:0])),
        r"train-labels-idx1-ubyte: no labels$",
    ),
]


@pytest.mark.parametrize(("edit", "message"), IDX_BROKEN)
def test_a_broken_idx_file_is_one_error_naming_it(
    tmp_path: Path, edit: Callable[[dict[str, Path]], None], message: str
) -> None:
    edit(write_idx(tmp_path, TRAIN, TEST))
    with pytest.raises(ConfigError, match="^" + re.escape(str(tmp_path)) + "(/|: )" + message):
        load_mnist(str(tmp_path))


def test_a_damaged_gzip_file_is_one_error_naming_it(tmp_path: Path) -> None:
    paths = write_idx(tmp_path, TRAIN, TEST, gz=True)
    labels = paths["train-labels-idx1-ubyte"]
    labels.write_bytes(labels.read_bytes()[:-20])
    with pytest.raises(ConfigError, match=f"^{re.escape(str(labels))}: a damaged or truncated gzip file"):
        load_mnist(str(tmp_path))
    labels.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(labels))}: not a gzip file"):
        load_mnist(str(tmp_path))


NPZ_BROKEN = [
    (
        {"x_train": TRAIN[0], "y_train": TRAIN[1], "x_test": TEST[0]},
        r": no array 'y_test' \(mnist.npz holds x_train, y_train, x_test, y_test\)$",
    ),
    (
        {"x_train": TRAIN[0] / 255, "y_train": TRAIN[1], "x_test": TEST[0], "y_test": TEST[1]},
        r": x_train is float64 of shape \(120, 28, 28\); expected images of uint8 pixels, \(n, 28, 28\)$",
    ),
    (
        {"x_train": TRAIN[0], "y_train": TRAIN[1][:-1], "x_test": TEST[0], "y_test": TEST[1]},
        r": y_train has 119 labels, but x_train has 120 images$",
    ),
    (
        {"x_train": TRAIN[0], "y_train": TRAIN[1], "x_test": TEST[0], "y_test": TEST[1].astype(str)},
        r": y_test is <U\d+ of shape \(40,\); expected one integer label per image$",
    ),
    (
        {"x_train": TRAIN[0], "y_train": TRAIN[1] + 1, "x_test": TEST[0], "y_test": TEST[1]},
        r": y_train: label number \d+ is 10, not a digit 0..9$",
    ),
    (
        {"x_train": TRAIN[0], "y_train": TRAIN[1], "x_test": TEST[0][:, :20, :20], "y_test": TEST[1]},
        r": x_test has images of shape \(20, 20\), x_train \(28, 28\)$",
    ),
]


@pytest.mark.parametrize(("arrays", "message"), NPZ_BROKEN)
def test_a_broken_npz_is_one_error_naming_it(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}{message}"):
        load_mnist(str(path))


def test_what_is_not_an_npz_archive_is_one_error_naming_it(tmp_path: Path) -> None:
    text = tmp_path / "mnist.npz"
    text.write_text("not an archive\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(text))}: not a readable npz archive"):
        load_mnist(str(text))
    single = tmp_path / "one.npy"
    np.save(single, TRAIN[0])
    with pytest.raises(ConfigError, match=f"^{re.escape(str(single))}: not an npz archive \\(a single .npy array\\)$"):
        load_mnist(str(single))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([{"a": 1}]), y_train=TRAIN[1], x_test=TEST[0], y_test=TEST[1])
    with pytest.raises(ConfigError, match=f"^{re.escape(str(objects))}: not a readable npz archive .*pickle"):
        load_mnist(str(objects))
    with pytest.raises(ConfigError, match=r"/nowhere: no such file or folder \(\[training\] dataset_path: "):
        load_mnist(str(tmp_path / "nowhere"))


def mnist_config(folder: Path, where: str, training: str = "", owners: int = 3) -> Path:
    text = hosts_toml(owners, training=f'dataset = "mnist"\ndataset_path = "{where}"\n{training}')
    (folder / "hosts.toml").write_text(text)
    return folder / "hosts.toml"


def test_the_split_keeps_mnists_test_set_and_deals_its_training_set(tmp_path: Path) -> None:
    write_idx(tmp_path / "data", TRAIN, TEST, gz=True)
    config = load_config(mnist_config(tmp_path, "data", 'split = "dirichlet"'))
    assert config.training.dataset_path == str(tmp_path.resolve() / "data")  # beside the hosts.toml
    split = load_split(config)
    assert split.classes == tuple("0123456789") and split.n_features == 784
    assert split.test is not None
    names = split.test.features
    assert names[0] == "pixel1" and names[-1] == "pixel784" and len(names) == 784
    assert split.test is not None
    np.testing.assert_array_equal(split.test.x, TEST[0].reshape(40, 784) / 255.0)
    np.testing.assert_array_equal(split.test.y, TEST[1])
    dealt = np.concatenate([d.x for d in split.owners])
    assert dealt.min() >= 0.0 and dealt.max() <= 1.0 and len(dealt) == 120
    order = np.lexsort(dealt.T[::-1])
    expected = TRAIN[0].reshape(120, 784) / 255.0
    np.testing.assert_array_equal(dealt[order], expected[np.lexsort(expected.T[::-1])])
    for owner in config.data_owners:  # a data owner builds only its own part, the same one
        data, classes = owner_data(config, owner)
        assert owner.index is not None and classes == split.classes
        np.testing.assert_array_equal(data.x, split.owners[owner.index].x)
        np.testing.assert_array_equal(data.y, split.owners[owner.index].y)


def test_the_npz_and_the_idx_files_make_the_same_split(tmp_path: Path) -> None:
    write_idx(tmp_path / "idx", TRAIN, TEST)
    write_npz(tmp_path / "mnist.npz", TRAIN, TEST)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    from_idx = load_split(load_config(mnist_config(tmp_path / "a", "../idx")))
    from_npz = load_split(load_config(mnist_config(tmp_path / "b", str(tmp_path / "mnist.npz"))))
    for a, b in zip(from_idx.owners, from_npz.owners, strict=True):
        np.testing.assert_array_equal(a.x, b.x)
        np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ('dataset = "mnist"', r'\[training\] dataset_path: missing: the folder of .* \(dataset = "mnist"\)$'),
        (
            'dataset = "digits"\ndataset_path = "x"',
            r"\[training\] dataset_path: only with dataset = \"mnist\", not 'digits'$",
        ),
        (
            'dataset = "mnist"\ndataset_path = "x"\ntest_fraction = 0.2',
            r"\[training\] test_fraction: MNIST keeps its own test set .*; remove the key$",
        ),
        ('dataset = "mnist"\ndataset_path = 3', r"\[training\] dataset_path: expected a non-empty string, got 3$"),
    ],
)
def test_the_mnist_keys_are_checked_by_name(training: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^t\.toml: " + message):
        parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=training), "t.toml")


def test_each_host_has_its_own_mnist_path_but_every_player_the_same_dataset() -> None:
    def settings(training: str, path: str) -> str:
        return shared_settings(parse_config(hosts_toml(3, ports=[9000, 9001, 9002, 9003], training=training), path))

    mine = settings('dataset = "mnist"\ndataset_path = "mnist.npz"', "a/hosts.toml")
    elsewhere = settings('dataset = "mnist"\ndataset_path = "/data/mnist"', "b/hosts.toml")
    assert first_difference(mine, elsewhere, "x", "y") is None
    assert first_difference(mine, settings('dataset = "digits"', "a/hosts.toml"), "model-owner", "data-owner-0") == (
        '[training] dataset differs: "mnist" at model-owner, "digits" at data-owner-0'
    )
