"""Physics-informed neural networks: domains, autograd derivatives, conditions, loss weighting,
trainable PDE coefficients and an Adam-then-L-BFGS fit.

Example:
    >>> from kutta.pde.pinn import DirichletBC, Interval, PINNProblem, fit, mlp
    >>> domain = Interval(0.0, 1.0)
    >>> problem = PINNProblem(
    ...     mlp(1, 1, hidden=8, depth=2),
    ...     lambda x, u, ops: ops.partial(0, 0) + 1.0,
    ...     domain,
    ...     domain.sample_interior(16),
    ...     {"boundary": DirichletBC(domain, domain.sample_boundary(2), 0.0)},
    ... )
    >>> problem.term_names
    ['pde', 'boundary']
"""

from kutta.pde.pinn.conditions import (
    Condition,
    DirichletBC,
    InitialCondition,
    NeumannBC,
    Observations,
    PeriodicBC,
)
from kutta.pde.pinn.domains import (
    SAMPLING_METHODS,
    Box,
    Interval,
    Rectangle,
    SpaceTime,
    unit_samples,
)
from kutta.pde.pinn.fit import FitHistory, fit
from kutta.pde.pinn.networks import mlp
from kutta.pde.pinn.ops import Derivatives, divergence, gradient, laplacian, partial
from kutta.pde.pinn.problem import Coefficients, PINNProblem
from kutta.pde.pinn.weighting import FixedWeights, GradientNormAnnealing

__all__ = [
    "SAMPLING_METHODS",
    "Box",
    "Coefficients",
    "Condition",
    "Derivatives",
    "DirichletBC",
    "FitHistory",
    "FixedWeights",
    "GradientNormAnnealing",
    "InitialCondition",
    "Interval",
    "NeumannBC",
    "Observations",
    "PINNProblem",
    "PeriodicBC",
    "Rectangle",
    "SpaceTime",
    "divergence",
    "fit",
    "gradient",
    "laplacian",
    "mlp",
    "partial",
    "unit_samples",
]
