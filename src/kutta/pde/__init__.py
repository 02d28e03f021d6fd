"""Partial differential equations: neural operators, physics-informed networks, and the classical
solvers that make their training data and reference solutions.

- :mod:`kutta.pde.fno`: Fourier neural operators (Li et al. 2021), ``FNO1d`` / ``FNO2d``, with
  domain padding for non-periodic data.
- :mod:`kutta.pde.pinn`: physics-informed neural networks (boxes, balls, polygons and their
  unions/intersections/differences, autograd derivatives, boundary/initial conditions, hard
  constraints by an output transform, loss weighting, trainable coefficients, Adam then L-BFGS,
  residual-based adaptive refinement).
- Classical solvers and data: Gaussian random fields (:mod:`~kutta.pde.grf`), pseudo-spectral
  viscous Burgers (:mod:`~kutta.pde.burgers`) and its exact Cole–Hopf solution
  (:mod:`~kutta.pde.burgers_exact`), finite-difference Darcy flow (:mod:`~kutta.pde.darcy`).

This layer sits beside :mod:`kutta.models`: it uses the engine, never the CLI or plotting.

Example:
    >>> import torch
    >>> from kutta.pde import FNO1d
    >>> FNO1d(modes=4, width=8)(torch.randn(2, 1, 32)).shape
    torch.Size([2, 1, 32])
"""

from kutta.pde.burgers import burgers_data, fourier_resample, solve_burgers
from kutta.pde.burgers_exact import burgers_exact
from kutta.pde.darcy import darcy_data, darcy_matrix, solve_darcy
from kutta.pde.fno import FNO1d, FNO2d, SpectralConv1d, SpectralConv2d, relative_l2
from kutta.pde.grf import neumann_grf_2d, periodic_grf

__all__ = [
    "FNO1d",
    "FNO2d",
    "SpectralConv1d",
    "SpectralConv2d",
    "burgers_data",
    "burgers_exact",
    "darcy_data",
    "darcy_matrix",
    "fourier_resample",
    "neumann_grf_2d",
    "periodic_grf",
    "relative_l2",
    "solve_burgers",
    "solve_darcy",
]
