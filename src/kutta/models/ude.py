"""Universal differential equations (Rackauckas et al. 2020) and sparse regression (SINDy).

A UDE keeps the mechanism you know and learns only what is missing:
``dy/dt = known(t, y) + network(y)``. After training, the network's output can be turned back
into equations by sequentially thresholded least squares (STLSQ) over a polynomial library.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.models._solver import integrate, make_solver_options


class _UDEField(nn.Module):
    def __init__(
        self, known: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], network: nn.Module
    ):
        super().__init__()
        self.known = known
        self.network = network
        self.nfe = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.known(t, y) + self.network(y)


class UDE(nn.Module):
    """``dy/dt = known(t, y) + network(y)``: a known mechanism plus a learned correction.

    Args:
        known: the known part ``known(t, y)``; an ``nn.Module`` if it has learnable parameters.
        network: the unknown part, a module mapping (B, D) to (B, D).
        method, rtol, atol, options, gradient: solver settings.

    Attributes:
        nfe: vector-field evaluations since the last call began (includes an adjoint backward).

    Example:
        >>> from kutta.models import UDE
        >>> growth = lambda t, y: torch.stack([1.3 * y[:, 0], -1.8 * y[:, 1]], dim=-1)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
        >>> model = UDE(growth, net, method="rk4", options={"step_size": 0.1})
        >>> model(torch.tensor([[0.44, 4.6]]), torch.linspace(0, 1, 11)).shape
        torch.Size([11, 1, 2])
    """

    def __init__(
        self,
        known: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        network: nn.Module,
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-6,
        atol: float = 1e-6,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
    ):
        super().__init__()
        self.field = _UDEField(known, network)
        self.solver = make_solver_options(method, rtol, atol, options, gradient)

    @property
    def network(self) -> nn.Module:
        return self.field.network

    @property
    def nfe(self) -> int:
        return self.field.nfe

    def forward(self, y0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The trajectory from ``y0`` (B, D) at the times ``t`` (T,): (T, B, D)."""
        self.field.nfe = 0
        return integrate(self.field, y0, t.to(y0), self.solver)


def polynomial_library(
    y: torch.Tensor, degree: int, names: Sequence[str] | None = None
) -> tuple[torch.Tensor, list[str]]:
    """All monomials of the columns of ``y`` (N, D) up to ``degree``, constant first.

    Returns the features (N, F) and their names (``"1"``, ``"u1"``, ``"u1*u2"``, ``"u1^2"``...).

    Example:
        >>> features, names = polynomial_library(torch.tensor([[2.0, 3.0]]), 2)
        >>> names, features.tolist()
        (['1', 'u1', 'u2', 'u1^2', 'u1*u2', 'u2^2'], [[1.0, 2.0, 3.0, 4.0, 6.0, 9.0]])
    """
    if y.dim() != 2:
        raise InvalidArgumentError(f"y must have shape (samples, variables), got {tuple(y.shape)}")
    if degree < 0:
        raise InvalidArgumentError(f"degree must be >= 0, got {degree}")
    names = list(names) if names is not None else [f"u{i + 1}" for i in range(y.shape[1])]
    if len(names) != y.shape[1]:
        raise InvalidArgumentError(f"got {len(names)} names for {y.shape[1]} variables")
    columns, labels = [torch.ones_like(y[:, 0])], ["1"]
    for d in range(1, degree + 1):
        for combo in itertools.combinations_with_replacement(range(y.shape[1]), d):
            columns.append(torch.prod(y[:, list(combo)], dim=1))
            labels.append(
                "*".join(
                    names[i] if k == 1 else f"{names[i]}^{k}"
                    for i, k in sorted({i: combo.count(i) for i in combo}.items())
                )
            )
    return torch.stack(columns, dim=1), labels


def stlsq(
    features: torch.Tensor,
    targets: torch.Tensor,
    threshold: float,
    max_iterations: int = 20,
    ridge: float = 0.0,
) -> torch.Tensor:
    """Sequentially thresholded least squares: sparse ``xi`` with ``features @ xi ~ targets``.

    Fit by (ridge) least squares, zero every coefficient below ``threshold`` in magnitude, refit
    on the survivors, and repeat until the support stops changing (Brunton et al. 2016).
    Columns are not rescaled: scale the features if their magnitudes differ a lot.

    Args:
        features: (N, F) library evaluated at the samples.
        targets: (N, K) what to explain (e.g. the learned network's outputs).
        threshold: the smallest coefficient magnitude kept.
        max_iterations: the cap on threshold-refit rounds.
        ridge: Tikhonov regularisation of each least-squares fit.

    Returns:
        ``xi`` (F, K), zero outside the selected support.

    Example:
        >>> u = torch.rand(50, 2, dtype=torch.float64)
        >>> features, names = polynomial_library(u, 2)
        >>> xi = stlsq(features, -0.9 * u[:, :1] * u[:, 1:], threshold=0.1)
        >>> [names[i] for i in xi[:, 0].nonzero().flatten()]
        ['u1*u2']
    """
    if features.dim() != 2 or targets.dim() != 2 or features.shape[0] != targets.shape[0]:
        raise InvalidArgumentError(
            f"features (N, F) and targets (N, K) must share N, got {tuple(features.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if threshold < 0 or ridge < 0:
        raise InvalidArgumentError("threshold and ridge must be >= 0")

    def fit(columns: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        a = features[:, columns]
        gram = a.T @ a + ridge * torch.eye(a.shape[1], dtype=a.dtype, device=a.device)
        return torch.linalg.lstsq(gram, a.T @ target).solution

    n_features = features.shape[1]
    xi = torch.zeros(n_features, targets.shape[1], dtype=features.dtype, device=features.device)
    for k in range(targets.shape[1]):
        support = torch.ones(n_features, dtype=torch.bool, device=features.device)
        coefficients = torch.zeros(n_features, dtype=features.dtype, device=features.device)
        for _ in range(max_iterations):
            coefficients = torch.zeros_like(coefficients)
            if support.any():
                coefficients[support] = fit(support, targets[:, k])
            new_support = coefficients.abs() >= threshold
            if torch.equal(new_support, support):
                break
            support = new_support
        xi[:, k] = torch.where(support, coefficients, torch.zeros_like(coefficients))
    return xi
