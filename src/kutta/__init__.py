"""kutta: neural differential equations for PyTorch.

Two APIs over one engine:

- drop-in torchdiffeq: ``kutta.odeint``, ``kutta.odeint_event``;
- native: ``kutta.solve(f, y0, t_eval=..., method=kutta.Tsit5(), controller=kutta.PIController(...))``
  returning a :class:`Solution` with outputs, statistics, status codes and dense output.
"""

from .compat import odeint, odeint_event
from .controllers import ConstantController, IController, PIController, PIDController
from .errors import InvalidArgumentError, KuttaError, SolverError, UnknownNameError
from .solution import Solution
from .status import Status

__version__ = "0.1.0"

__all__ = [
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
