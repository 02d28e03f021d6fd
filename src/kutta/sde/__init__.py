"""Stochastic differential equations: torchsde-compatible solvers, Brownian motion and adjoints.

Code written for torchsde runs after ``import kutta.sde as torchsde``.

Example:
    >>> import torch, kutta.sde as torchsde
    >>> class GBM(torchsde.SDEIto):
    ...     def __init__(self):
    ...         super().__init__(noise_type="diagonal")
    ...     def f(self, t, y):
    ...         return 0.5 * y
    ...     def g(self, t, y):
    ...         return 0.2 * y
    >>> ys = torchsde.sdeint(GBM(), torch.ones(8, 1), [0.0, 1.0], method="euler", dt=0.01)

The same SDE in kutta's native API, solved by the loop that solves ODEs:

    >>> import kutta
    >>> from kutta.terms import SDETerm
    >>> term = SDETerm(lambda t, y: 0.5 * y, lambda t, y: 0.2 * y, noise_type="diagonal")
    >>> sol = kutta.solve(term, torch.ones(8, 1), span=(0.0, 1.0), method="euler", step_size=0.01)
"""

from kutta.sde.adjoint import sdeint_adjoint
from kutta.sde.base import BaseSDE, SDEIto, SDEStratonovich
from kutta.sde.brownian import (
    BaseBrownian,
    BrownianInterval,
    BrownianPath,
    BrownianTree,
    ReverseBrownian,
    brownian_interval_like,
)
from kutta.sde.native import SDEMethod
from kutta.sde.sdeint import sdeint
from kutta.sde.settings import (
    LEVY_AREA_APPROXIMATIONS,
    METHOD_OPTIONS,
    METHODS,
    NOISE_TYPES,
    SDE_TYPES,
)

__all__ = [
    "BaseBrownian",
    "BaseSDE",
    "BrownianInterval",
    "BrownianPath",
    "BrownianTree",
    "LEVY_AREA_APPROXIMATIONS",
    "METHODS",
    "METHOD_OPTIONS",
    "NOISE_TYPES",
    "ReverseBrownian",
    "SDEIto",
    "SDEMethod",
    "SDEStratonovich",
    "SDE_TYPES",
    "brownian_interval_like",
    "sdeint",
    "sdeint_adjoint",
]
