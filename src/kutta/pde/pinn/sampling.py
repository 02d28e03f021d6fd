"""Seeded points in the unit cube, the raw material every domain maps onto its own shape.

Three methods: "uniform" (independent), "lhs" (Latin hypercube) and "sobol" (scrambled Sobol).
A seed is an int, a :class:`numpy.random.Generator` (drawn from and advanced, so several draws
from one generator are reproducible together), or None (fresh entropy).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import qmc

from kutta.errors import InvalidArgumentError, UnknownNameError

SAMPLING_METHODS = ("uniform", "lhs", "sobol")
Seed = int | np.random.Generator | None


def unit_samples(n: int, dim: int, method: str = "uniform", seed: Seed = 0) -> np.ndarray:
    """``n`` points in the unit cube ``[0, 1]**dim`` (float64 numpy array), seeded.

    Example:
        >>> unit_samples(4, 2, "lhs", seed=0).shape
        (4, 2)
    """
    if method not in SAMPLING_METHODS:
        raise UnknownNameError("sampling method", method, SAMPLING_METHODS)
    check_count(n)
    if dim < 1:
        raise InvalidArgumentError(f"dim must be >= 1, got {dim}")
    if method == "uniform":
        return np.random.default_rng(seed).random((n, dim))
    if method == "lhs":
        return qmc.LatinHypercube(d=dim, seed=np.random.default_rng(seed)).random(n)
    # Sobol points are balanced only for powers of two; scipy warns otherwise, which is fine here
    # (a scrambled Sobol prefix is still a low-discrepancy set), so draw the next power of two.
    sobol = qmc.Sobol(d=dim, scramble=True, seed=np.random.default_rng(seed))
    return sobol.random_base2(max(int(np.ceil(np.log2(n))), 0))[:n]


def check_count(n: int) -> None:
    """Refuse a number of points that is not an int >= 1."""
    if not isinstance(n, int) or n < 1:
        raise InvalidArgumentError(f"the number of points must be an int >= 1, got {n!r}")
