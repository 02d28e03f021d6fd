"""The Ornstein–Uhlenbeck process dX = -θ X dt + σ dW and its exact value at t = 1 on a given
Brownian path, for the strong-order tests (test_orders.py with sdeint, test_native.py with
kutta.solve). Additive noise: the Itô and Stratonovich forms are the same SDE.

Exact solution (Itô's product rule on e^{θt} X_t, then integration by parts of ∫ e^{θs} dW_s):
X_1 = e^{-θ} x0 + σ e^{-θ} (e^{θ} W_1 - θ ∫_0^1 e^{θs} W_s ds), the integral taken on a 2^12 grid
using ∫_{t_k}^{t_k+δ} W ds = δ W_{t_k} + U_k (U_k: the Brownian interval's space-time integral
over the cell, so the interval needs ``levy_area_approximation="space-time"`` or finer).
"""

import math

import torch

THETA, SIGMA, X0 = 1.2, 0.6, 0.7


def drift(t, y):
    return -THETA * y


def diffusion(t, y):
    """σ as additive noise of one channel: shape (batch, 1, 1)."""
    return torch.full((y.shape[0], 1, 1), SIGMA, dtype=y.dtype)


def exact_at_one(bm, y0: torch.Tensor, cells: int = 2**12) -> torch.Tensor:
    """X_1 from X_0 = ``y0`` on the path of ``bm`` (a BrownianInterval on [0, 1])."""
    delta = 1.0 / cells
    w_t = torch.zeros_like(y0)
    weighted_integral = torch.zeros_like(y0)  # ∫_0^1 e^{θs} W_s ds
    for k in range(cells):
        dw, u = bm(k * delta, (k + 1) * delta, return_U=True)
        weighted_integral += math.exp(THETA * (k + 0.5) * delta) * (delta * w_t + u)
        w_t = w_t + dw
    stochastic = math.exp(THETA) * w_t - THETA * weighted_integral  # ∫_0^1 e^{θs} dW_s
    return math.exp(-THETA) * (y0 + SIGMA * stochastic)
