"""Terms: what ``kutta.solve`` integrates besides a plain vector field ``f(t, y)``.

- :class:`SDETerm`: ``dY = f(t, Y) dt + g(t, Y) dW`` with a Brownian motion ``W``; it is solved by
  an SDE method (``kutta.sde.SDEMethod`` or a name such as ``"euler"``) in the same loop as ODEs.
- :class:`CDETerm`: ``dZ = f(t, Z) dX(t)`` for a control path ``X``; it is the ODE
  ``dZ/dt = f(t, Z) X'(t)``, so a ``CDETerm`` is itself a vector field.

Example:
    >>> import torch, kutta
    >>> from kutta.terms import SDETerm
    >>> term = SDETerm(lambda t, y: -y, lambda t, y: 0.1 * y, noise_type="diagonal")
    >>> sol = kutta.solve(term, torch.ones(4, 1), t_eval=torch.tensor([0.0, 1.0]),
    ...                   method="euler", step_size=0.01)
    >>> sol.ys.shape
    torch.Size([2, 4, 1])
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .errors import InvalidArgumentError

_NOISE_TYPES = ("additive", "diagonal", "general", "scalar")
_SDE_TYPES = ("ito", "stratonovich")


class SDETerm(nn.Module):
    """The stochastic term ``dY = drift(t, Y) dt + diffusion(t, Y) dW``.

    Args:
        drift: ``f(t, y)`` with ``y`` of shape ``(batch, d)``, returning ``(batch, d)``.
        diffusion: ``g(t, y)``: ``(batch, d)`` for diagonal noise (one channel per state),
            ``(batch, d, m)`` for general noise (``m`` channels), additive noise (``g`` does not
            depend on ``y``) and scalar noise (``m = 1``).
        noise_type: ``"diagonal"``, ``"general"``, ``"additive"`` or ``"scalar"``.
        sde_type: ``"ito"`` or ``"stratonovich"``.
        bm: the Brownian motion (e.g. ``kutta.sde.BrownianInterval``). Default: a fresh
            ``BrownianInterval`` over the output times, with the Lévy area the method needs.

    The term is an ``nn.Module``, so modules given as ``drift`` and ``diffusion`` are its
    submodules and their parameters are found by ``term.parameters()``.

    Example:
        >>> import torch
        >>> from kutta.sde import BrownianInterval
        >>> bm = BrownianInterval(0.0, 1.0, size=(8, 1), entropy=0)
        >>> term = SDETerm(lambda t, y: 0.5 * y, lambda t, y: 0.2 * y, bm=bm)
        >>> term.noise_type, term.sde_type
        ('diagonal', 'ito')
    """

    def __init__(
        self,
        drift: Callable,
        diffusion: Callable,
        noise_type: str = "diagonal",
        sde_type: str = "ito",
        bm: Any = None,
    ):
        super().__init__()
        if not callable(drift) or not callable(diffusion):
            raise InvalidArgumentError("drift and diffusion must be callables f(t, y), g(t, y)")
        if noise_type not in _NOISE_TYPES:
            raise InvalidArgumentError(
                f"noise_type must be one of {list(_NOISE_TYPES)}, got {noise_type!r}"
            )
        if sde_type not in _SDE_TYPES:
            raise InvalidArgumentError(
                f"sde_type must be one of {list(_SDE_TYPES)}, got {sde_type!r}"
            )
        self.drift, self.diffusion = drift, diffusion
        self.noise_type, self.sde_type, self.bm = noise_type, sde_type, bm

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.drift(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.diffusion(t, y)


class CDETerm(nn.Module):
    """The controlled term ``dZ = vector_field(t, Z) dX(t)``, as the vector field of an ODE.

    Args:
        vector_field: ``f(t, z)`` with ``z`` of shape ``(batch, hidden)``, returning
            ``(batch, hidden, channels)``.
        path: the control ``X``, anything with ``derivative(t) -> (batch, channels)``, such as
            the paths of :mod:`kutta.interpolate`.

    ``X'`` may jump at the path's knots: give them to the solver as ``jump_t`` (adaptive
    methods) so that no step straddles one.

    Example:
        >>> import torch, kutta
        >>> from kutta.interpolate import LinearInterpolation
        >>> times = torch.linspace(0, 1, 5)
        >>> path = LinearInterpolation.from_values(torch.randn(2, 5, 3), times)
        >>> term = CDETerm(lambda t, z: torch.ones(2, 4, 3), path)
        >>> sol = kutta.solve(term, torch.zeros(2, 4), t_eval=times,
        ...                   jump_t=times[1:-1].tolist())
        >>> sol.ys.shape
        torch.Size([5, 2, 4])
    """

    def __init__(self, vector_field: Callable, path: Any):
        super().__init__()
        if not callable(vector_field):
            raise InvalidArgumentError("vector_field must be a callable f(t, z)")
        if not callable(getattr(path, "derivative", None)):
            raise InvalidArgumentError(
                "path must have a derivative(t) method (e.g. a kutta.interpolate path)"
            )
        self.vector_field, self.path = vector_field, path

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        dx = self.path.derivative(t)
        field = self.vector_field(t, z)
        if (
            field.dim() != z.dim() + 1
            or field.shape[:-1] != z.shape
            or field.shape[-1] != dx.shape[-1]
        ):
            raise InvalidArgumentError(
                f"vector_field(t, z) must have shape (*z.shape, channels) = "
                f"{(*z.shape, dx.shape[-1])}, got {tuple(field.shape)}"
            )
        return (field @ dx.unsqueeze(-1)).squeeze(-1)
