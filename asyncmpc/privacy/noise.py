"""Integer noise for the secure sum, from a cryptographically secure source.

The mechanism is the Skellam mechanism (Agarwal, Kairouz and Liu, "The Skellam Mechanism for
Differentially Private Federated Learning", NeurIPS 2021): noise Sk(mu, mu) = Poisson(mu) -
Poisson(mu), mean 0 and variance 2 mu, on each coordinate of the fixed-point sum. It is
integer-valued, so it adds exactly in the ring Z_2^64, and it is closed under summation: the
noise of several servers adds up to Skellam noise with the summed variance, which is what the
analysis of a sum of independent parts needs.

Randomness: numpy's Poisson sampler driven by an AES-128 counter-mode bit generator
(``randomgen.AESCounter``) whose key comes from ``os.urandom``; never numpy's default PCG64,
which is not a cryptographic generator, and never a seed anyone else knows.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from asyncmpc.prf import new_seed

__all__ = ["MAX_VARIANCE", "secure_generator", "skellam"]

MAX_VARIANCE = 2.0**120
"""numpy's Poisson sampler accepts means below about 9.2e18 (2^63); the ring leaves room for
far less noise than that anyway (see ``ring.MAX_ABS``)."""


def secure_generator(random_bytes: Callable[[int], bytes] = os.urandom) -> np.random.Generator:
    """A numpy Generator on AES-128 in counter mode, keyed with 16 bytes from ``random_bytes``."""
    from randomgen import AESCounter

    key = int.from_bytes(new_seed(random_bytes), "little")
    return np.random.Generator(AESCounter(key=key))


def skellam(variance: float, size: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``size`` independent draws of Sk(variance / 2, variance / 2): integers, mean 0."""
    if not 0 < variance < 2 * 9.2e18:
        raise ValueError(f"Skellam variance {variance:g} is outside what the sampler takes")
    mu = variance / 2
    return rng.poisson(mu, size).astype(np.int64) - rng.poisson(mu, size).astype(np.int64)
