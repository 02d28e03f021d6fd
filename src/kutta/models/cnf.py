"""Continuous normalizing flows (FFJORD, Grathwohl et al. 2019).

Data ``x`` flows to a standard normal ``z = x(t1)`` along ``dx/dt = f(t, x)``; the density
follows the instantaneous change of variables ``d log p(x(t))/dt = -tr(df/dx)``, so
``log p(x) = log N(z; 0, I) + int_0^t1 tr(df/dx) dt``. The trace is exact (one vector-Jacobian
product per dimension) or Hutchinson's estimate ``e^T (df/dx) e`` with one probe ``e`` per
sample, fixed during a solve (Rademacher or Gaussian). Optional regularizers (Finlay et al.
2020): the kinetic energy ``int ||f||^2 dt`` and the Jacobian norm ``int ||df/dx||_F^2 dt``
(exact, or its estimate ``||e^T df/dx||^2``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models._solver import integrate, make_solver_options
from kutta.models.layers import TimeMLP

TRACES = ("exact", "hutchinson")
NOISES = ("rademacher", "gaussian")


def exact_divergence(
    dx: torch.Tensor, x: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(d dx / dx)`` and ``||d dx / dx||_F^2`` per row, from one VJP per dimension: (B,), (B,).

    Example:
        >>> x = torch.randn(3, 2, requires_grad=True)
        >>> exact_divergence(2 * x, x, create_graph=False)[0]
        tensor([4., 4., 4.])
    """
    trace = torch.zeros_like(dx[:, 0])
    frobenius = torch.zeros_like(dx[:, 0])
    for i in range(dx.shape[1]):
        row = torch.autograd.grad(dx[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[
            0
        ]
        trace = trace + row[:, i]
        frobenius = frobenius + (row**2).sum(-1)
    return trace, frobenius


def hutchinson_divergence(
    dx: torch.Tensor, x: torch.Tensor, noise: torch.Tensor, create_graph: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unbiased estimates ``e^T J e`` of ``tr J`` and ``||e^T J||^2`` of ``||J||_F^2`` (for
    ``E[e e^T] = I``), ``J = d dx / dx``, from one VJP: (B,), (B,).

    Example:
        >>> x = torch.randn(3, 2, requires_grad=True)
        >>> e = torch.ones(3, 2)
        >>> hutchinson_divergence(2 * x, x, e, create_graph=False)[0]
        tensor([4., 4., 4.])
    """
    e_jacobian = torch.autograd.grad(dx, x, noise, create_graph=create_graph)[0]
    return (e_jacobian * noise).sum(-1), (e_jacobian**2).sum(-1)


class _CNFDynamics(nn.Module):
    """The augmented state ``[x, a, kinetic, jacobian]`` with ``a' = -tr(df/dx)``."""

    def __init__(self, func: nn.Module, dim: int, trace: str):
        super().__init__()
        self.func = func
        self.dim = dim
        self.trace = trace
        self.noise: torch.Tensor | None = None

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        # Derivatives of the field are needed even when no graph is being recorded (evaluation,
        # or the adjoint's forward solve); only then does x need to become a leaf.
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = state[:, : self.dim]
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            dx = self.func(t, x)
            if self.trace == "exact":
                trace, jacobian = exact_divergence(dx, x, create_graph)
            else:
                trace, jacobian = hutchinson_divergence(dx, x, self.noise, create_graph)
        kinetic = (dx**2).sum(-1)
        return torch.cat([dx, torch.stack([-trace, kinetic, jacobian], dim=-1)], dim=-1)


class CNFOutput(NamedTuple):
    """Per-sample log-density and the regularizers integrated over the flow: (B,) each."""

    log_prob: torch.Tensor
    kinetic_energy: torch.Tensor  # int ||f||^2 dt
    jacobian_norm: torch.Tensor  # int ||df/dx||_F^2 dt (exact or estimated)


class CNF(nn.Module):
    """A continuous normalizing flow with a standard normal base distribution.

    Args:
        dim: data dimension D.
        func: the vector field ``f(t, x)`` (default: a :class:`TimeMLP` with concatsquash layers
            of ``hidden`` widths and Softplus).
        hidden: hidden widths of the default field.
        t1: the flow's end time.
        trace: ``"exact"`` (D VJPs per evaluation; for small D) or ``"hutchinson"`` (one).
        noise: Hutchinson probe distribution, ``"rademacher"`` or ``"gaussian"``.
        method, rtol, atol, options, gradient: solver settings.

    Example:
        >>> from kutta.models import CNF
        >>> flow = CNF(2, hidden=(16,), method="rk4", options={"step_size": 0.25})
        >>> flow.log_prob(torch.randn(5, 2)).shape, flow.sample(3).shape
        (torch.Size([5]), torch.Size([3, 2]))
    """

    def __init__(
        self,
        dim: int,
        func: nn.Module | None = None,
        hidden: Sequence[int] = (64, 64, 64),
        t1: float = 1.0,
        trace: str = "exact",
        noise: str = "rademacher",
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-5,
        atol: float = 1e-5,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
    ):
        super().__init__()
        if trace not in TRACES:
            raise UnknownNameError("trace", trace, TRACES)
        if noise not in NOISES:
            raise UnknownNameError("noise", noise, NOISES)
        if not t1 > 0:
            raise InvalidArgumentError(f"t1 must be positive, got {t1}")
        self.dim, self.t1, self.noise = dim, float(t1), noise
        self.solver = make_solver_options(method, rtol, atol, options, gradient)
        field = func if func is not None else TimeMLP(dim, hidden, layer="concatsquash")
        self.dynamics = _CNFDynamics(field, dim, trace)

    @property
    def func(self) -> nn.Module:
        return self.dynamics.func

    def _span(self, reference: torch.Tensor, backwards: bool = False) -> torch.Tensor:
        span = torch.tensor([0.0, self.t1], dtype=reference.dtype, device=reference.device)
        return span.flip(0) if backwards else span

    def _probe(self, x: torch.Tensor) -> torch.Tensor:
        if self.noise == "gaussian":
            return torch.randn_like(x)
        return torch.randint_like(x, 0, 2) * 2 - 1

    def base_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; 0, I)`` per row: (B,)."""
        return -0.5 * (z**2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)

    def forward(self, x: torch.Tensor) -> CNFOutput:
        """Log-density of ``x`` (B, D) and the flow's regularizers."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"x must have shape (batch, {self.dim}), got {tuple(x.shape)}"
            )
        if self.dynamics.trace == "hutchinson":
            self.dynamics.noise = self._probe(x)
        start = torch.cat([x, x.new_zeros(x.shape[0], 3)], dim=-1)
        end = integrate(self.dynamics, start, self._span(x), self.solver)[-1]
        z, change, kinetic, jacobian = end[:, : self.dim], end[:, self.dim], end[:, -2], end[:, -1]
        return CNFOutput(self.base_log_prob(z) - change, kinetic, jacobian)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` per row of ``x`` (B, D): (B,)."""
        return self(x).log_prob

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Data to base space: ``z = x(t1)``, (B, D)."""
        return integrate(self.func, x, self._span(x), self.solver)[-1]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Base to data space: the flow run backwards from ``t1`` to 0, (B, D)."""
        return integrate(self.func, z, self._span(z, backwards=True), self.solver)[-1]

    def sample(self, n: int) -> torch.Tensor:
        """``n`` samples from the model: (n, D)."""
        reference = next(self.parameters())
        z = torch.randn(n, self.dim, dtype=reference.dtype, device=reference.device)
        return self.inverse(z)
