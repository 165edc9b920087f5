"""MNIST from the files a user downloads (learning layer; numpy and the standard library only).

``[training] dataset_path`` names either a folder with the four IDX files as they are
distributed (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``; each may also be gzipped, ``NAME.gz``, or spelt with a dot before
``idx``, as some mirrors do), or Keras' ``mnist.npz`` (arrays ``x_train``, ``y_train``,
``x_test``, ``y_test``). Images come back as rows of uint8 pixels (28 x 28 = 784 for MNIST),
labels as the digits 0..9; MNIST's own training and test sets are kept as they are.

A file that is missing, not of its format, truncated, or that disagrees with its partner
(images and labels of different counts, training and test images of different sizes) is a
ConfigError naming the file and what is wrong. An npz archive is read without pickle.
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from asyncmpc.errors import ConfigError

__all__ = ["CLASSES", "IDX_FILES", "NPZ_KEYS", "Mnist", "load_mnist", "pixel_names"]

Pixels = NDArray[np.uint8]
Labels = NDArray[np.int64]

CLASSES = tuple(str(d) for d in range(10))
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Mnist:
    """MNIST's training and test sets: a row of pixels (0..255) per image, a digit per label."""

    x_train: Pixels
    y_train: Labels
    x_test: Pixels
    y_test: Labels


def pixel_names(pixels: int) -> tuple[str, ...]:
    """The pixels' names, ``pixel1`` .. ``pixelN`` in row-major order (as OpenML's ``mnist_784``)."""
    return tuple(f"pixel{i}" for i in range(1, pixels + 1))


def load_mnist(path: str) -> Mnist:
    """MNIST from ``path``: a folder of the IDX files, or an ``mnist.npz``. ConfigError names
    the file and what is wrong with it."""
    where = Path(path)
    if where.is_dir():
        return _from_idx(where)
    if not where.exists():
        raise ConfigError(
            f"{path}: no such file or folder ([training] dataset_path: the folder of MNIST's IDX files, or mnist.npz)"
        )
    return _from_npz(where)


# --- the IDX files -------------------------------------------------------------------------


def _from_idx(folder: Path) -> Mnist:
    train = _idx_pair(folder, IDX_FILES[0], IDX_FILES[1])
    test = _idx_pair(folder, IDX_FILES[2], IDX_FILES[3])
    _same_size(train[0], test[0])
    return Mnist(train[1], train[2], test[1], test[2])


def _idx_pair(folder: Path, images_name: str, labels_name: str) -> tuple[_Images, Pixels, Labels]:
    """One set's images and labels, which must be as many."""
    images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
    images = _idx(images_path, 3)
    labels = _idx(labels_path, 1)
    if len(labels) != len(images):
        raise ConfigError(f"{labels_path}: {len(labels)} labels, but {images_path} has {len(images)} images")
    shown = _Images(str(images_path), images.shape[1], images.shape[2])
    return shown, images.reshape(len(images), -1), _digits(str(labels_path), labels)


@dataclass(frozen=True)
class _Images:
    path: str
    rows: int
    cols: int


def _same_size(train: _Images, test: _Images) -> None:
    if (train.rows, train.cols) != (test.rows, test.cols):
        raise ConfigError(
            f"{test.path}: images of {test.rows}x{test.cols} pixels, but {train.path} has {train.rows}x{train.cols}"
        )


def _find(folder: Path, name: str) -> Path:
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, f"{name}.gz", dotted, f"{dotted}.gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise ConfigError(f"{folder}: no {name} (nor {name}.gz): MNIST is the four files {', '.join(IDX_FILES)}")


def _idx(path: Path, dims: int) -> Pixels:
    """An IDX file of unsigned bytes with ``dims`` dimensions (magic number 0x0000080D)."""
    data = _read(path)
    magic = 0x800 + dims
    what = "images" if dims == 3 else "labels"
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else f"only {len(data)} bytes"
        hint = " (it is gzipped: name it .gz)" if data[:2] == b"\x1f\x8b" else ""
        raise ConfigError(f"{path}: not an IDX file of {what} (magic number {found}, expected 0x{magic:08x}){hint}")
    start = 4 + 4 * dims
    if len(data) < start:
        raise ConfigError(f"{path}: truncated: {len(data)} bytes, shorter than its {start}-byte header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    want = start + int(np.prod(shape, dtype=object))
    described = f"{shape[0]} {what}" + (f" of {shape[1]}x{shape[2]} pixels" if dims == 3 else "")
    if len(data) < want:
        size = f"{len(data)}" + (" uncompressed" if path.suffix == ".gz" else "")
        raise ConfigError(f"{path}: truncated: its header gives {described} ({want} bytes), the file has {size}")
    if len(data) > want:
        raise ConfigError(f"{path}: {len(data) - want} bytes after the {described} its header gives")
    if shape[0] == 0:
        raise ConfigError(f"{path}: no {what}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(shape)


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except gzip.BadGzipFile as exc:
        raise ConfigError(f"{path}: not a gzip file ({exc})") from None
    except (EOFError, zlib.error) as exc:
        raise ConfigError(f"{path}: a damaged or truncated gzip file ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _digits(path: str, labels: NDArray[Any]) -> Labels:
    bad = np.flatnonzero((labels < 0) | (labels > 9))
    if len(bad):
        raise ConfigError(f"{path}: label number {bad[0] + 1} is {labels[bad[0]]}, not a digit 0..9")
    return labels.astype(np.int64)


# --- Keras' mnist.npz ----------------------------------------------------------------------


def _from_npz(path: Path) -> Mnist:
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ConfigError(f"{path}: not an npz archive (a single .npy array)")
        with loaded as archive:
            missing = [k for k in NPZ_KEYS if k not in archive.files]
            if missing:
                raise ConfigError(f"{path}: no array {missing[0]!r} (mnist.npz holds {', '.join(NPZ_KEYS)})")
            arrays = {k: archive[k] for k in NPZ_KEYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ConfigError(f"{path}: not a readable npz archive ({exc})") from None
    sets = [_npz_set(path, arrays, part) for part in ("train", "test")]
    (x_train, y_train), (x_test, y_test) = sets
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ConfigError(f"{path}: x_test has images of shape {x_test.shape[1:]}, x_train {x_train.shape[1:]}")
    return Mnist(x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1), y_test)


def _npz_set(path: Path, arrays: dict[str, NDArray[Any]], part: str) -> tuple[Pixels, Labels]:
    x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
    if x.dtype != np.uint8 or x.ndim not in (2, 3):
        raise ConfigError(
            f"{path}: x_{part} is {x.dtype} of shape {x.shape}; expected images of uint8 pixels, (n, 28, 28)"
        )
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ConfigError(f"{path}: y_{part} is {y.dtype} of shape {y.shape}; expected one integer label per image")
    if len(y) != len(x):
        raise ConfigError(f"{path}: y_{part} has {len(y)} labels, but x_{part} has {len(x)} images")
    if len(x) == 0:
        raise ConfigError(f"{path}: x_{part} holds no images")
    return x, _digits(f"{path}: y_{part}", y)
