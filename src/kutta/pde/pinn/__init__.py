"""Physics-informed neural networks: domains (boxes, balls, polygons and their unions, intersections and
differences), autograd derivatives, conditions, hard constraints by an output transform, loss
weighting, trainable PDE coefficients, an Adam-then-L-BFGS fit, and residual-based adaptive
refinement of the collocation points.

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
from kutta.pde.pinn.domains import Box, Interval, Rectangle, SpaceTime
from kutta.pde.pinn.fit import FitHistory, fit
from kutta.pde.pinn.geometry import Difference, Intersection, Shape, Union
from kutta.pde.pinn.networks import mlp
from kutta.pde.pinn.ops import Derivatives, divergence, gradient, laplacian, partial
from kutta.pde.pinn.problem import Coefficients, PINNProblem
from kutta.pde.pinn.refinement import Refinement, refine_by_residual, residual_magnitude
from kutta.pde.pinn.sampling import SAMPLING_METHODS, unit_samples
from kutta.pde.pinn.shapes import Ball, Disk, Polygon
from kutta.pde.pinn.weighting import FixedWeights, GradientNormAnnealing

__all__ = [
    "SAMPLING_METHODS",
    "Ball",
    "Box",
    "Coefficients",
    "Condition",
    "Derivatives",
    "Difference",
    "DirichletBC",
    "Disk",
    "FitHistory",
    "FixedWeights",
    "GradientNormAnnealing",
    "InitialCondition",
    "Intersection",
    "Interval",
    "NeumannBC",
    "Observations",
    "PINNProblem",
    "PeriodicBC",
    "Polygon",
    "Rectangle",
    "Refinement",
    "Shape",
    "SpaceTime",
    "Union",
    "divergence",
    "fit",
    "gradient",
    "laplacian",
    "mlp",
    "partial",
    "refine_by_residual",
    "residual_magnitude",
    "unit_samples",
]
