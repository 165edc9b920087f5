"""Small MNIST files made by the tests, in the formats a user downloads: the four IDX files
(raw or gzipped) and Keras' mnist.npz. The images are 28 x 28 bytes, each a faint noise with a
bright square whose place is its digit, so a model learns them in a few rounds."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from asyncmpc.learning.mnist import IDX_FILES

Images = NDArray[np.uint8]


def digits(n: int, seed: int) -> tuple[Images, Images]:
    """``n`` images of shape (28, 28) and their labels, every digit about as often."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 10).astype(np.uint8)
    rng.shuffle(y)
    x = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for i, d in enumerate(y):  # the square wanders a little
        row, col = 2 + 12 * (d // 5) + rng.integers(0, 3), 2 + 5 * (d % 5) + rng.integers(0, 2)
        x[i, row : row + 6, col : col + 3] = rng.integers(150, 256, size=(6, 3), dtype=np.uint8)
    return x, y


def idx_bytes(array: NDArray[np.uint8]) -> bytes:
    """``array`` as an IDX file of unsigned bytes: magic number, big-endian sizes, the bytes."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(
    folder: Path, train: tuple[Images, Images], test: tuple[Images, Images], *, gz: bool = False
) -> dict[str, Path]:
    """The four IDX files in ``folder`` (gzipped, named ``NAME.gz``, with ``gz``); their paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in zip(IDX_FILES, (*train, *test), strict=True):
        data = idx_bytes(array)
        path = folder / (f"{name}.gz" if gz else name)
        path.write_bytes(gzip.compress(data) if gz else data)
        paths[name] = path
    return paths


def write_npz(path: Path, train: tuple[Images, Images], test: tuple[Images, Images]) -> Path:
    """An mnist.npz as Keras ships it: x_train, y_train, x_test, y_test."""
    np.savez_compressed(path, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1])
    return path
