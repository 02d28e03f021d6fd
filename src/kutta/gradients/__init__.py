"""Gradient strategies: how a solve is differentiated.

A strategy wraps the solve loop. ``Backprop`` records the solver's operations for autograd;
adjoint and checkpointing strategies (continuous adjoint, seminorm adjoint, recursive
checkpointing, interpolated adjoint) plug in here with the same contract:
``strategy.run(integrate, f, y0, params) -> result``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class Backprop:
    """Differentiate through the solver's operations (exact gradients of the discrete solve).

    Memory grows linearly with the number of steps.

    Example:
        >>> import torch, kutta
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.tensor([0.0, 1.0]),
        ...                   gradient=kutta.Backprop())
        >>> sol.ys[-1].sum().backward()
        >>> round(float(y0.grad), 4)
        0.3679
    """

    def run(self, integrate: Callable[[], Any]) -> Any:
        return integrate()
