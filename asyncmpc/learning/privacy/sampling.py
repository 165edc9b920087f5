"""Who takes part in a private round: Poisson sampling of a data owner's examples (or of the
owner itself), and the sum of the examples' gradients each clipped to an L2 bound (DP-SGD, Abadi
et al., "Deep Learning with Differential Privacy", CCS 2016).

Privacy amplification by subsampling assumes that no one else knows the sample, and the
accountant counts every release as an independent sample. So each answer draws its sample
afresh, with AES counter mode under a key that is new for the draw (``new_seed``: the
operating system's secure random source) and never leaves the owner: a model owner that asks
for a step again (a resume, or one that strays from the protocol) gets another independent
sample, which the servers and the owner count as one more release, never the same sample
again under fresh noise.

The work does not depend on the sample: every example's clipped gradient is computed and
multiplied by its sampled bit (at owner level, the whole update by the owner's bit), so the
time an owner takes to answer says nothing about who took part.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from asyncmpc.crypto.prf import expand
from asyncmpc.learning.models import BuiltModel
from asyncmpc.learning.optim import clip

__all__ = ["clippable", "clipped_sum", "poisson_bits", "safe_gradient"]

Floats = NDArray[np.float64]
Labels = NDArray[np.int64]


def poisson_bits(n: int, rate: float, key: bytes) -> Floats:
    """1.0 for each of ``n`` units in the sample, 0.0 for the others: each independently with
    probability ``rate``, decided by AES-CTR under ``key`` (16 bytes, new for every draw)."""
    if not 0 < rate <= 1:
        raise ValueError(f"sampling rate {rate}: must be in (0, 1]")
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    words = expand(key, n).view(np.uint64)
    uniform = (words >> np.uint64(11)).astype(np.float64) * 2.0**-53  # 53 random bits in [0, 1)
    return (uniform < rate).astype(np.float64)


def clipped_sum(
    model: BuiltModel, theta: Floats, x: Floats, y: Labels, bound: float, weights: Floats | None = None
) -> tuple[Floats, float]:
    """The sum over the rows of (x, y) of each example's gradient scaled down to L2 norm
    ``bound`` (times its weight, a sampled bit), and the sum of their losses (likewise). No
    rows: zeros. An example whose gradient is not finite, or whose model raises, counts as a
    zero gradient (``safe_gradient``)."""
    total = np.zeros(model.size, dtype=np.float64)
    loss_sum = 0.0
    for i in range(len(y)):  # one example at a time: every model, plug-ins too, gives a mean gradient
        loss, grad = safe_gradient(model, theta, x[i : i + 1], y[i : i + 1])
        w = 1.0 if weights is None else float(weights[i])
        total += w * clip(grad, bound)
        loss_sum += w * loss
    return total, loss_sum


def safe_gradient(model: BuiltModel, theta: Floats, x: Floats, y: Labels) -> tuple[float, Floats]:
    """The model's loss and gradient on (x, y), or (0, zeros) when either is not finite or the
    model raises. Under [privacy] nothing an owner sends may depend on its data but through
    the clipped, noised sum: a model owner that chose the scaling so that one example
    overflows must not see a decline (a noise-free answer to "is some |x_ij| above t?").
    Replacing one example's gradient by zeros moves the sum by at most the clip bound, as any
    example does, so the sensitivity holds."""
    try:
        with np.errstate(all="ignore"):
            loss, grad = model.gradient(theta, x, y)
    except Exception:  # a plug-in's failure may depend on the data: it is not reported either
        return 0.0, np.zeros(model.size)
    if not np.isfinite(loss):
        return 0.0, np.zeros(model.size)
    return float(loss), clippable(grad)


def clippable(vector: Floats) -> Floats:
    """``vector`` if every element and its L2 norm are finite; a vector of the same direction
    if only the norm overflows (the clip keeps it); zeros otherwise."""
    if not np.all(np.isfinite(vector)):
        return np.zeros_like(vector)
    with np.errstate(over="ignore"):
        finite_norm = np.isfinite(np.linalg.norm(vector))
    return vector if finite_norm else vector / np.max(np.abs(vector))
