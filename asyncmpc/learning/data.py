"""Training data for the players (scikit-learn's bundled data sets, MNIST, or CSV files).

With a bundled data set every process loads the same file (scikit-learn's copy, read without
importing scikit-learn), holds out a stratified test split for the model owner
(``test_fraction``, ``seed``) and deals the rest among the data owners,
IID or label-skewed by a Dirichlet(alpha) draw per class; each data owner then keeps only its
own part. MNIST (``dataset = "mnist"``) is read from the files at ``[training] dataset_path``
on each host (``mnist``) and dealt the same way, but keeps its own test set (the 10000 t10k
images) for the model owner; its pixels become features in [0, 1]. With ``dataset = "csv"``
each data owner reads its own file (and the model owner its test file, if it names one).
Labels become class indices 0..k-1.

Data splits and mini-batches use numpy's seeded generators on purpose: they must be
reproducible and they are not secrets. Shares never come from here.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config, Player, TrainingSettings
from asyncmpc.errors import ConfigError, PluginError
from asyncmpc.learning.mnist import CLASSES as MNIST_CLASSES
from asyncmpc.learning.mnist import load_mnist, pixel_names

__all__ = [
    "Dataset",
    "Split",
    "batch_indices",
    "feature_names",
    "csv_cell",
    "is_plugin",
    "load_csv",
    "listed",
    "load_features",
    "load_plugin_data",
    "load_split",
    "owner_data",
    "partition",
    "stratified_split",
]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


@dataclass(frozen=True)
class Dataset:
    x: Floats
    y: Labels
    features: tuple[str, ...] = ()
    """The columns' names, when the data names them (a CSV file's header, MNIST's pixels)."""


@dataclass(frozen=True)
class Split:
    """Everything a deployment's data looks like, as one process sees it."""

    classes: tuple[str, ...]
    n_features: int
    owners: tuple[Dataset, ...]
    """Each data owner's training part (empty tuple for CSV data: owners read their own)."""
    test: Dataset | None
    """The model owner's test set; its ``features`` name the columns where the data does (a CSV
    file's header, MNIST's ``pixel1`` .. ``pixel784``)."""


_BUNDLED = {
    "breast_cancer": "breast_cancer.csv",
    "digits": "digits.csv.gz",
    "wine": "wine_data.csv",
    "iris": "iris.csv",
}


def _bundled(name: str) -> tuple[Floats, Labels, tuple[str, ...]]:
    """A data set that ships with scikit-learn, read from its file without importing
    scikit-learn (whose import costs a player 1.8 s and 70 MB); through scikit-learn's loader
    only if the file is not where scikit-learn keeps it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")  # finds the package without running it
    folder = Path(spec.origin).parent / "datasets" / "data" if spec and spec.origin else None
    path = folder / _BUNDLED[name] if folder else None
    if path is None or not path.is_file():
        return _bundled_by_sklearn(name)
    if name == "digits":  # no header; 64 pixels and the digit
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1], table[:, -1].astype(np.int64), tuple(str(d) for d in range(10))
    with open(path) as fh:
        header = fh.readline().strip().split(",")  # n_samples, n_features, class names
        table = np.loadtxt(fh, delimiter=",")
    return table[:, :-1], table[:, -1].astype(np.int64), tuple(header[2:])


def _bundled_by_sklearn(name: str) -> tuple[Floats, Labels, tuple[str, ...]]:
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")()
    x = np.asarray(bunch.data, dtype=np.float64)
    y = np.asarray(bunch.target, dtype=np.int64)
    return x, y, tuple(str(c) for c in bunch.target_names)


def feature_names(dataset: str, n_features: int) -> tuple[str, ...]:
    """The names of a data set's features as scikit-learn gives them (``feature_names``),
    read through its loader (so only when a model is saved), or ``f0 .. f{n-1}`` for data
    that names none (a data plug-in's, or a bundled set scikit-learn does not know)."""
    default = tuple(f"f{i}" for i in range(n_features))
    if dataset not in _BUNDLED:
        return default
    from sklearn import datasets

    loader = getattr(datasets, f"load_{dataset}", None)
    names = None if loader is None else getattr(loader(), "feature_names", None)
    if names is None or len(names) != n_features:
        return default
    return tuple(str(n) for n in names)


def stratified_split(y: Labels, test_fraction: float, seed: int) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Indices of a training and a test part, each class split in the proportion
    ``test_fraction`` (the test part gets ceil(test_fraction * n) examples; the classes' shares
    are rounded down, then the largest remainders get one more), shuffled by ``seed``."""
    classes, counts = np.unique(y, return_counts=True)
    n_test = int(np.ceil(test_fraction * len(y)))
    exact = counts * (n_test / len(y))
    per_class = np.floor(exact).astype(np.int64)
    for c in np.argsort(-(exact - per_class), kind="stable")[: n_test - int(per_class.sum())]:
        per_class[c] += 1
    rng = np.random.default_rng([seed, 0])
    train: list[NDArray[np.int64]] = []
    test: list[NDArray[np.int64]] = []
    for cls, k in zip(classes, per_class, strict=True):
        order = rng.permutation(np.flatnonzero(y == cls))
        test.append(order[:k])
        train.append(order[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def partition(y: Labels, owners: int, settings: TrainingSettings) -> list[NDArray[np.int64]]:
    """Indices of each owner's examples: IID, or label-skewed with Dirichlet(alpha) per class.

    Every owner gets at least one example; raises ConfigError if there are fewer examples
    than owners.
    """
    if len(y) < owners:
        raise ConfigError(f"[training] dataset: {len(y)} training examples cannot be dealt to {owners} data owners")
    rng = np.random.default_rng([settings.seed, 1])
    if settings.split == "iid":
        order = rng.permutation(len(y))
        return [np.sort(part) for part in np.array_split(order, owners)]
    parts: list[list[int]] = [[] for _ in range(owners)]
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        weights = rng.dirichlet([settings.dirichlet_alpha] * owners)
        cuts = (np.cumsum(weights)[:-1] * len(idx)).astype(int)
        for owner, chunk in enumerate(np.split(idx, cuts)):
            parts[owner].extend(int(i) for i in chunk)
    # no owner may be empty: give each empty owner one example from the largest
    for owner in range(owners):
        if not parts[owner]:
            donor = max(range(owners), key=lambda o: len(parts[o]))
            parts[owner].append(parts[donor].pop())
    return [np.sort(np.array(p, dtype=np.int64)) for p in parts]


def load_split(config: Config) -> Split:
    """The deployment's data as described by ``config.training`` (bundled data sets and MNIST;
    with CSV files or a data plug-in, only the model owner's test set)."""
    t = config.training
    if t.dataset == "csv" or is_plugin(t.dataset):
        mo = config.model_owner
        if t.dataset == "csv":
            test = load_csv(mo.csv, mo.label_column, t.classes) if mo.csv else None
        else:
            test = load_plugin_data(config, mo)
        n_features = test.x.shape[1] if test is not None else -1
        return Split(t.classes, n_features, (), test)
    source = _source(config)
    parts = partition(source.y_train, len(config.data_owners), t)
    owners = tuple(source.train(p) for p in parts)
    test = Dataset(_floats(source.x_test), source.y_test, source.features)
    return Split(source.classes, source.x_train.shape[1], owners, test)


def owner_data(config: Config, player: Player) -> tuple[Dataset, tuple[str, ...]]:
    """A data owner's own training data and the class labels."""
    t = config.training
    if t.dataset == "csv":
        assert player.csv is not None  # checked when the config was loaded
        return load_csv(player.csv, player.label_column, t.classes), t.classes
    if is_plugin(t.dataset):
        data = load_plugin_data(config, player)
        if data is None:
            raise PluginError(f"data plug-in {t.dataset!r} returned no examples for {player.name}")
        return data, t.classes
    assert player.index is not None
    source = _source(config)
    part = partition(source.y_train, len(config.data_owners), t)[player.index]
    return source.train(part), source.classes


@dataclass(frozen=True)
class _Source:
    """A bundled data set's training and test parts before the training part is dealt.
    MNIST's pixels stay bytes until a part is taken: all 60000 images as floats are 376 MB."""

    x_train: NDArray[Any]
    y_train: Labels
    x_test: NDArray[Any]
    y_test: Labels
    classes: tuple[str, ...]
    features: tuple[str, ...] = ()

    def train(self, rows: NDArray[np.int64]) -> Dataset:
        return Dataset(_floats(self.x_train[rows]), self.y_train[rows])


def _source(config: Config) -> _Source:
    t = config.training
    if t.dataset == "mnist":
        mnist = load_mnist(t.dataset_path)
        features = pixel_names(mnist.x_train.shape[1])
        return _Source(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test, MNIST_CLASSES, features)
    x, y, classes = _bundled(t.dataset)
    train_rows, test_rows = stratified_split(y, t.test_fraction, t.seed)
    return _Source(x[train_rows], y[train_rows], x[test_rows], y[test_rows], classes)


def _floats(x: NDArray[Any]) -> Floats:
    """Features as floats: bytes (MNIST's pixels) scaled to [0, 1]."""
    if x.dtype == np.uint8:
        return x / 255.0
    return np.asarray(x, dtype=np.float64)


def is_plugin(dataset: str) -> bool:
    return ":" in dataset


def load_plugin_data(config: Config, player: Player) -> Dataset | None:
    """A player's examples from the data plug-in ``[training] dataset = "module:function"``.

    The function is called as ``function(player_name, index)`` (``index`` is the data owner's
    0, 1, ...; None for the model owner) and returns ``(x, y)``: a matrix of numbers, a row per
    example, and one label per row from ``[training] classes`` (compared as text); the model
    owner's call returns its test set, or None for none. PluginError names what is wrong.
    """
    from asyncmpc.learning.models import checked, load_plugin

    spec, classes = config.training.dataset, config.training.classes
    fn = load_plugin(spec, "data")
    result = checked(spec, "loading", lambda: fn(player.name, player.index), "data")
    if result is None:
        return None
    try:
        raw_x, raw_y = result
        x = np.asarray(raw_x, dtype=np.float64)
        labels = [str(v) for v in np.asarray(raw_y).tolist()]
    except (TypeError, ValueError) as exc:
        raise PluginError(f"data plug-in {spec!r}: expected (x, y) of numbers and labels: {exc}") from None
    if x.ndim != 2 or x.shape[0] != len(labels) or x.shape[0] == 0:
        raise PluginError(
            f"data plug-in {spec!r}: x has shape {x.shape} and y {len(labels)} labels; "
            "expected a row of features per label, at least one"
        )
    if not np.isfinite(x).all():
        raise PluginError(f"data plug-in {spec!r}: x holds NaN or infinite values")
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise PluginError(f"data plug-in {spec!r}: labels {unknown[:5]} are not among [training] classes")
    return Dataset(x, np.array([index[v] for v in labels], dtype=np.int64))


def load_csv(path: str, label_column: str, classes: tuple[str, ...]) -> Dataset:
    """Read a CSV file with a header row: numeric features, and labels from ``classes``.

    Raises ConfigError naming the file, the row and the column of anything it cannot use.
    """
    header, rows = _read_rows(path)
    if label_column not in header:
        raise ConfigError(f"{path}: no column {label_column!r} in the header {header}")
    label_at = header.index(label_column)
    columns = [c for c in range(len(header)) if c != label_at]
    index = {c: i for i, c in enumerate(classes)}
    xs: list[list[float]] = []
    ys: list[int] = []
    for line, row in rows:
        label = row[label_at].strip()
        if label not in index:
            raise ConfigError(f"{path}: line {line}: label {label!r} is not one of the classes {list(classes)}")
        ys.append(index[label])
        xs.append(_numbers(path, line, header, row, columns))
    if not ys:
        raise ConfigError(f"{path}: no data rows")
    features = tuple(header[c] for c in columns)
    return Dataset(np.array(xs, dtype=np.float64), np.array(ys, dtype=np.int64), features)


def load_features(
    path: str, label_column: str, names: Sequence[str] | None = None, *, no_header: bool = False
) -> Floats:
    """The columns of a CSV file that a saved model takes (what ``asyncmpc predict`` reads).

    With ``names`` (the model's feature names), the header's columns of those names, in the
    model's order; other columns are left out. Without (a model saved before names were kept),
    every column but ``label_column``, in the file's order. With ``no_header`` the file has no
    header: every line is a row of ``names``, in that order. Raises ConfigError naming the
    columns the header lacks, a file whose first line is numbers (no header), or the file, row
    and column of a bad value.
    """
    if no_header:
        if names is None:
            raise ValueError("reading a file without a header needs the names of its columns")
        header, rows = _read_rows(path, list(names))
        columns = list(range(len(header)))
    else:
        header, rows = _read_rows(path)
        columns = _columns(path, header, label_column, names)
    xs = [_numbers(path, line, header, row, columns) for line, row in rows]
    if not xs:
        raise ConfigError(f"{path}: no data rows")
    return np.array(xs, dtype=np.float64)


def csv_cell(path: str, label_column: str, row: int, feature: int) -> tuple[int, str]:
    """The line number and the column name, in the CSV file ``load_csv`` read, of example
    ``row``'s feature ``feature`` (to name a value in a message; the file is read again)."""
    header, rows = _read_rows(path)
    names = [h for h in header if h != label_column]
    return rows[row][0], names[feature]


def _columns(path: str, header: list[str], label_column: str, names: Sequence[str] | None) -> list[int]:
    """Where each of the model's features is in the header."""
    if names is None:
        skip = header.index(label_column) if label_column in header else None
        return [c for c in range(len(header)) if c != skip]
    missing = [n for n in names if n not in header]
    if not missing:
        twice = [n for n in names if header.count(n) > 1]
        if twice:
            raise ConfigError(f"{path}: the header has column {twice[0]!r} {header.count(twice[0])} times")
        return [header.index(n) for n in names]
    if header and all(_is_number(h) for h in header):
        raise ConfigError(
            f"{path}: line 1 is numbers, not a header naming the model's {len(names)} features "
            f"({listed(names)}): add that header row, or pass --no-header if every line holds those "
            "features in that order"
        )
    raise ConfigError(f"{path}: the header has no column {listed(missing)} (the model takes {len(names)} features)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def listed(names: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _read_rows(path: str, header: list[str] | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the non-empty rows (with their line numbers), each as long as the header.
    With ``header`` given the file has none: every line is a row."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:  # a spreadsheet's byte-order mark is no name
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    first = 1
    if header is None:
        if not rows:
            raise ConfigError(f"{path}: empty file (expected a header row)")
        header, rows, first = [h.strip() for h in rows[0]], rows[1:], 2
        width = f"the header has {len(header)}"
    else:
        width = f"the model takes {len(header)} features"
    out = []
    for line, row in enumerate(rows, start=first):
        if not row:
            continue
        if len(row) != len(header):
            raise ConfigError(f"{path}: line {line} has {len(row)} fields, {width}")
        out.append((line, row))
    return header, out


def _numbers(path: str, line: int, header: list[str], row: list[str], columns: Sequence[int]) -> list[float]:
    values = []
    for col in columns:
        cell = row[col]
        try:
            v = float(cell)
        except ValueError:
            raise ConfigError(f"{path}: line {line}, column {header[col]!r}: {cell!r} is not a number") from None
        if not np.isfinite(v):
            raise ConfigError(f"{path}: line {line}, column {header[col]!r}: {cell!r} is not finite")
        values.append(v)
    return values


def batch_indices(n: int, batch_size: int, seed: int, owner: int, round_no: int) -> NDArray[np.int64] | None:
    """The examples a data owner uses in a round (None: all of them)."""
    if batch_size <= 0 or batch_size >= n:
        return None
    rng = np.random.default_rng([seed, 2, owner, round_no])
    return np.sort(rng.choice(n, size=batch_size, replace=False)).astype(np.int64)
