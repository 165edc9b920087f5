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

import functools
import hashlib
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from asyncmpc.config import Config
from asyncmpc.crypto.prf import new_seed

if TYPE_CHECKING:
    from asyncmpc.learning.privacy.plan import PrivacyPlan

__all__ = ["MAX_VARIANCE", "NoiseSource", "TreeNoise", "secure_generator", "skellam"]

MAX_VARIANCE = 2.0**120
"""numpy's Poisson sampler accepts means below about 9.2e18 (2^63); the ring leaves room for
far less noise than that anyway (see ``ring.MAX_ABS``)."""


def plans(config: Config) -> Callable[[int], PrivacyPlan]:
    """``plan_for(config, size)``, computed once per contribution size (a calibration takes tens
    of milliseconds)."""
    from asyncmpc.learning.privacy.plan import plan_for

    return functools.cache(functools.partial(plan_for, config))


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
    plus = rng.poisson(mu, size).astype(np.int64, copy=False)
    return np.subtract(plus, rng.poisson(mu, size).astype(np.int64, copy=False), out=plus)


class NoiseSource:
    """A compute server's noise for each round (``protocol.noise.NoiseDraw``): Skellam noise of
    the variance ``privacy.plan`` gives each of the round's dealers, from one secure generator.

    Drawing 10^6 values takes about 0.11 s, about a whole round at that size; numpy draws
    without holding the GIL, so after each draw the next one (same dealers and shape: the
    likely next round) is drawn on a worker thread while the server does the round's work. A
    draw ahead is used once, or discarded when the next round differs; the generator is only
    ever used by one draw at a time.
    """

    def __init__(self, config: Config, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._config = config
        self.plan = plans(config)
        """The plan for contributions of a size: the noise multiplier calibrated to the proven
        epsilon depends on the size, which a server learns from the first round."""
        self._rng = secure_generator(random_bytes)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="noise")
        self._ahead: tuple[tuple[int, tuple[int, ...]], Future[NDArray[np.int64]]] | None = None

    def release_limit(self, size: int) -> int | None:
        """How many rounds of contributions of ``size`` elements the budget allows by the proven
        epsilon (None without ``epsilon``): a server refuses to release more, whatever the
        model owner asks."""
        p = self._config.privacy
        if p is None or not p.epsilon:
            return None
        return self.plan(size).accountant().rounds_within(p.epsilon, 1 << 40)

    def variance(self, dealers: int, size: int) -> float:
        return self.plan(size).dealer_variance(dealers)

    def __call__(self, dealers: int, shape: tuple[int, ...]) -> NDArray[np.int64]:
        want = (dealers, shape)
        ahead, self._ahead = self._ahead, None
        noise = None
        if ahead is not None:
            if ahead[0] == want:
                noise = ahead[1].result()
            else:
                ahead[1].cancel()
        if noise is None:
            noise = self._draw(want)
        self._ahead = (want, self._pool.submit(self._draw, want))
        return noise

    def _draw(self, want: tuple[int, tuple[int, ...]]) -> NDArray[np.int64]:
        dealers, shape = want
        size = int(np.prod(shape))
        with self._lock:
            return skellam(self.variance(dealers, size), size, self._rng).reshape(shape)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class TreeNoise:
    """A compute server's DP-FTRL noise (``tree``): for the round at ``position`` (from 1:
    tree ``(position - 1) // steps``, leaf ``(position - 1) % steps``), the noise of the node
    that leaf closes minus that of the nodes it covers, so the prefix sums of its rounds carry each tree's
    decomposition noise. Each node's Skellam noise comes from a generator keyed by this
    process's secret key and the node (with the round's dealers and shape: a node drawn for
    other dealers is another, independent node), so it is the same every time it is needed
    and nothing is stored; a restarted server draws other nodes, which adds independent noise
    and takes none away. Under [privacy] the variance each dealer draws is the plan's
    ``dealer_variance``."""

    def __init__(self, config: Config, steps: int, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._plan = plans(config)
        self.steps = steps
        self._key = new_seed(random_bytes)

    def variance(self, dealers: int, size: int) -> float:
        return self._plan(size).dealer_variance(dealers)

    def node(self, tree: int, node: tuple[int, int], dealers: int, shape: tuple[int, ...]) -> NDArray[np.int64]:
        """The noise of ``node`` (level, index) of tree ``tree``, for ``dealers`` dealers."""
        label = f"asyncmpc tree node {tree} {node[0]} {node[1]} {dealers} {shape}".encode()
        seed = hashlib.blake2b(label, key=self._key, digest_size=16).digest()
        size = int(np.prod(shape))
        return skellam(self.variance(dealers, size), size, secure_generator(lambda n: seed[:n])).reshape(shape)

    def draw(self, position: int, dealers: int, shape: tuple[int, ...]) -> NDArray[np.int64]:
        """This server's noise for the round at ``position`` (``protocol.noise.NoiseDraw`` with
        the position bound)."""
        from asyncmpc.learning.privacy.tree import increment

        tree, leaf = divmod(position - 1, self.steps)
        plus, minus = increment(leaf)
        noise = np.zeros(shape, dtype=np.int64)
        for node in plus:
            noise += self.node(tree, node, dealers, shape)
        for node in minus:
            noise -= self.node(tree, node, dealers, shape)
        return noise
