"""Example-level contributions for differential privacy: Poisson sampling of a data owner's
examples, and the sum of their gradients each clipped to an L2 bound (DP-SGD, Abadi et al.,
"Deep Learning with Differential Privacy", CCS 2016).

Which examples a round samples must be unpredictable to everyone else (privacy amplification
by subsampling assumes the adversary does not know the sample) and the same when a round is
asked again (a resumed model owner must not get two different samples of one round): so the
draw is AES counter mode under a key only the data owner holds, at a nonce naming the round.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.crypto.prf import expand, new_seed, nonce_for
from asyncmpc.learning.models import BuiltModel
from asyncmpc.learning.optim import clip

__all__ = ["clipped_sum", "poisson_sample", "sampling_key"]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


def poisson_sample(n: int, rate: float, key: bytes, round_no: int) -> NDArray[np.int64]:
    """The indices of the examples round ``round_no`` uses: each of the ``n`` independently with
    probability ``rate``, decided by AES-CTR under ``key`` (16 bytes)."""
    if not 0 < rate <= 1:
        raise ValueError(f"sampling rate {rate}: must be in (0, 1]")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    words = expand(key, n, nonce_for(f"asyncmpc poisson sampling {round_no}")).view(np.uint64)
    uniform = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 random bits in [0, 1)
    return np.flatnonzero(uniform < rate).astype(np.int64)


def clipped_sum(model: BuiltModel, theta: Floats, x: Floats, y: Labels, bound: float) -> tuple[Floats, float]:
    """The sum over the rows of (x, y) of each example's gradient scaled down to L2 norm
    ``bound``, and the sum of their losses. No rows: zeros (a round may sample none)."""
    total = np.zeros(model.size, dtype=np.float64)
    loss_sum = 0.0
    for i in range(len(y)):  # one example at a time: every model, plug-ins too, gives a mean gradient
        loss, grad = model.gradient(theta, x[i : i + 1], y[i : i + 1])
        total += clip(grad, bound)
        loss_sum += loss
    return total, loss_sum


def sampling_key(config: Config, name: str) -> bytes:
    """Data owner ``name``'s sampling key: derived from its TLS private key when it has one (so
    a restarted owner draws the same sample for a round asked again), else fresh (a restarted
    owner then draws anew; the model owner counts a round asked again as another release)."""
    if config.tls_dir is not None:
        try:
            secret = (Path(config.tls_dir) / f"{name}.key").read_bytes()
        except OSError:
            return new_seed()
        return hashlib.blake2b(secret, digest_size=16, person=b"asyncmpc-sample").digest()
    return new_seed()
