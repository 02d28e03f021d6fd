"""kutta: neural differential equations for PyTorch.

Two APIs over one engine:

- drop-in torchdiffeq: ``kutta.odeint``, ``kutta.odeint_event``;
- native: ``kutta.solve(f, y0, t_eval=..., method=kutta.Tsit5(), controller=kutta.PIController(...))``
  returning a :class:`Solution` with outputs, statistics, status codes and dense output.
"""

# Models come last: they are built on the engine above (they import kutta.odeint).
from . import models  # noqa: E402
from .adjoint import odeint_adjoint
from .compat import odeint, odeint_event
from .controllers import ConstantController, IController, PIController, PIDController
from .errors import InvalidArgumentError, KuttaError, SolverError, UnknownNameError
from .gradients import Adjoint, Backprop, InterpolatedAdjoint, RecursiveCheckpoint
from .models import (  # noqa: E402
    CNF,
    ODERNN,
    UDE,
    LatentODE,
    LatentSDE,
    NeuralCDE,
    NeuralODE,
    ODEBlock,
    ODENetClassifier,
)
from .sde.native import SDEMethod
from .solution import Solution
from .solve import solve
from .solvers import (
    RK4,
    AdaptiveHeun,
    Bosh3,
    ButcherTableau,
    Dopri5,
    Dopri8,
    Euler,
    ExplicitRK,
    Fehlberg2,
    Heun2,
    Heun3,
    Method,
    Midpoint,
    Ralston,
    Tsit5,
)
from .status import Status
from .terms import CDETerm, SDETerm

__version__ = "0.1.0"

__all__ = [
    "CDETerm",
    "SDEMethod",
    "SDETerm",
    "CNF",
    "UDE",
    "Adjoint",
    "InterpolatedAdjoint",
    "LatentODE",
    "LatentSDE",
    "NeuralCDE",
    "NeuralODE",
    "ODEBlock",
    "ODENetClassifier",
    "ODERNN",
    "RecursiveCheckpoint",
    "models",
    "odeint_adjoint",
    "RK4",
    "AdaptiveHeun",
    "Backprop",
    "Bosh3",
    "ButcherTableau",
    "Dopri5",
    "Dopri8",
    "Euler",
    "ExplicitRK",
    "Fehlberg2",
    "Heun2",
    "Heun3",
    "Method",
    "Midpoint",
    "Ralston",
    "Tsit5",
    "solve",
    "ConstantController",
    "IController",
    "InvalidArgumentError",
    "KuttaError",
    "PIController",
    "PIDController",
    "Solution",
    "SolverError",
    "Status",
    "UnknownNameError",
    "odeint",
    "odeint_event",
]
