"""A tiny fixed-step driver and test problems for the implicit methods' steps (fixture ``kit``)."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest
import scipy.linalg
import torch

from kutta.solvers.implicit import IMPLICIT_METHODS

CPU = torch.device("cpu")


def make(name: str, atol=1e-13, rtol=1e-13, dtype=torch.float64, **options):
    """A bound method with tight Newton tolerances, as the loop would prepare it."""
    method = IMPLICIT_METHODS[name](**options)
    method.set_error_scale(atol, rtol)
    return method.bind(dtype, CPU)


def fixed_steps(method, f, y0, t0: float, t1: float, n: int):
    """``n`` equal steps from ``t0`` to ``t1``; returns the final state and the step results."""
    y, state, t, h = y0, method.init(f, t0, y0), t0, (t1 - t0) / n
    results = []
    for _ in range(n):
        res = method.step(f, t, y, h, state)
        results.append(res)
        y, state, t = res.y, res.state, t + h
    return y, results


def nonlinear_f(t, y):
    """y1 = exp(sin t), y2 = 1 / (1 + t): nonlinear, coupled, explicitly time dependent."""
    y1, y2 = y[..., 0], y[..., 1]
    return torch.stack([y1 * math.cos(t) + y2**2 - 1.0 / (1.0 + t) ** 2, -(y2**2)], dim=-1)


def nonlinear_exact(t: float) -> torch.Tensor:
    return torch.tensor([math.exp(math.sin(t)), 1.0 / (1.0 + t)], dtype=torch.float64)


def stiff_linear():
    """``y' = A y`` with eigenvalues -1, -10, -1e4 (non-normal A); exact ``y(1)`` by ``expm``."""
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.normal(size=(3, 3)))[0] + np.eye(3)
    a = q @ np.diag([-1.0, -10.0, -1e4]) @ np.linalg.inv(q)
    y0 = np.array([1.0, 0.5, -0.3])
    a_t = torch.tensor(a)
    return (lambda t, y: y @ a_t.T), torch.tensor(y0), torch.tensor(scipy.linalg.expm(a) @ y0)


def slopes(errors: list[float]) -> list[float]:
    """Observed orders between successive halvings of the step."""
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


@pytest.fixture
def kit():
    return types.SimpleNamespace(
        make=make,
        fixed_steps=fixed_steps,
        nonlinear_f=nonlinear_f,
        nonlinear_exact=nonlinear_exact,
        stiff_linear=stiff_linear,
        slopes=slopes,
    )
