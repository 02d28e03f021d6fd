"""A PINN problem: a network, a PDE residual at collocation points, conditions, weights.

The PDE is a function ``residual(x, u, ops)`` of the points ``x`` (n, d), the network's output
``u`` (n, m) and a :class:`~kutta.pde.pinn.ops.Derivatives` ``ops``; it returns the residual,
``(n,)`` or ``(n, k)`` for a system (a list of ``(n,)`` tensors also works). Unknown PDE
coefficients (inverse problems) are :class:`Coefficients` the residual reads; they train with
the network. An output transform builds conditions into the solution exactly (hard constraints).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.pde.pinn.conditions import Condition
from kutta.pde.pinn.domains import Domain
from kutta.pde.pinn.ops import Derivatives
from kutta.pde.pinn.weighting import FixedWeights

Residual = Callable[[torch.Tensor, torch.Tensor, Derivatives], torch.Tensor]
OutputTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PDE_TERM = "pde"


class Coefficients(nn.Module):
    """Trainable scalar coefficients of a PDE, read by name: ``coefficients["nu"]``.

    Names in ``log_scale`` are stored as their logarithm, so they stay positive and a value
    like 0.003 is learned on the same footing as 1 (as Raissi et al. 2019 did for Burgers'
    viscosity).

    Example:
        >>> c = Coefficients(lambda1=0.5, lambda2=0.1, log_scale=["lambda2"])
        >>> round(c["lambda2"].item(), 6), sorted(c.values())
        (0.1, ['lambda1', 'lambda2'])
    """

    def __init__(self, log_scale: Iterable[str] = (), **initial: float):
        super().__init__()
        self.log_scale = frozenset(log_scale)
        unknown = sorted(self.log_scale - set(initial))
        if unknown:
            raise UnknownNameError("coefficient", unknown[0], list(initial))
        if not initial:
            raise InvalidArgumentError("Coefficients needs at least one name=value")
        self.raw = nn.ParameterDict()
        for name, value in initial.items():
            if name in self.log_scale and not value > 0:
                raise InvalidArgumentError(
                    f"log-scale coefficient {name!r} must start > 0, got {value}"
                )
            start = torch.log(torch.tensor(float(value))) if name in self.log_scale else value
            self.raw[name] = nn.Parameter(torch.as_tensor(start, dtype=torch.get_default_dtype()))

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.raw:
            raise UnknownNameError("coefficient", name, list(self.raw))
        raw = self.raw[name]
        return raw.exp() if name in self.log_scale else raw

    def values(self) -> dict[str, float]:
        """The current values as floats (for logging and reports)."""
        return {name: float(self[name].detach()) for name in self.raw}


class PINNProblem(nn.Module):
    """Everything a PINN minimizes: ``sum_i w_i mean(r_i ** 2)`` over the PDE and conditions.

    The terms are ``"pde"`` (the residual at ``collocation`` points) and the conditions by
    name. ``weighting`` is a :class:`FixedWeights` (or an adaptive scheme), or a dict of fixed
    weights. ``problem.parameters()`` holds the network's and the coefficients' parameters.

    ``output_transform(x, u_raw) -> u`` turns the network's output into the solution that the
    residual, the conditions and :meth:`predict` see (DeepXDE's ``apply_output_transform``):
    with ``u = x (1 - x) u_raw`` on ``[0, 1]``, ``u(0) = u(1) = 0`` holds for every network,
    and needs no condition (Lagaris et al. 1998; Lu et al. 2021, "Physics-informed neural
    networks with hard constraints for inverse design").

    Example:
        >>> from kutta.pde.pinn import DirichletBC, Interval, mlp
        >>> domain = Interval(0.0, 1.0)
        >>> problem = PINNProblem(
        ...     mlp(1, 1, hidden=8, depth=2),
        ...     lambda x, u, ops: ops.partial(0, 0) + 1.0,  # u'' = -1
        ...     domain,
        ...     domain.sample_interior(16, "lhs"),
        ...     {"boundary": DirichletBC(domain, domain.sample_boundary(2), 0.0)},
        ... )
        >>> sorted(problem.losses()), problem.loss().ndim
        (['boundary', 'pde'], 0)
        >>> hard = PINNProblem(
        ...     mlp(1, 1, hidden=8, depth=2),
        ...     lambda x, u, ops: ops.partial(0, 0) + 1.0,
        ...     domain,
        ...     domain.sample_interior(16, "lhs"),
        ...     output_transform=lambda x, u_raw: x * (1 - x) * u_raw,
        ... )
        >>> float(hard.predict(torch.tensor([[0.0], [1.0]])).abs().max())
        0.0
    """

    def __init__(
        self,
        network: nn.Module,
        residual: Residual,
        domain: Domain,
        collocation: torch.Tensor,
        conditions: Mapping[str, Condition] | None = None,
        coefficients: Coefficients | None = None,
        weighting: FixedWeights | Mapping[str, float] | None = None,
        output_transform: OutputTransform | None = None,
    ):
        super().__init__()
        if not callable(residual):
            raise InvalidArgumentError("residual must be a function (x, u, ops) -> residual")
        if output_transform is not None and not callable(output_transform):
            raise InvalidArgumentError("output_transform must be a function (x, u_raw) -> u")
        domain.check_shape(collocation)
        domain.check_inside(collocation)
        conditions = dict(conditions or {})
        if PDE_TERM in conditions:
            raise InvalidArgumentError(f"{PDE_TERM!r} names the PDE term; rename that condition")
        for name, condition in conditions.items():
            if not isinstance(condition, Condition):
                raise InvalidArgumentError(
                    f"condition {name!r} must be a Condition (DirichletBC, ...), "
                    f"got {type(condition).__name__}"
                )
        parameter = next(network.parameters(), None)
        if parameter is not None and parameter.dtype != collocation.dtype:
            raise InvalidArgumentError(
                f"the collocation points are {collocation.dtype} but the network is "
                f"{parameter.dtype}; sample with dtype=... or convert the network"
            )
        self.network, self.residual_fn, self.domain = network, residual, domain
        self.output_transform = output_transform
        self.register_buffer("collocation", collocation.detach())
        self.conditions = nn.ModuleDict(conditions)
        if coefficients is not None:
            # created in torch's default dtype; they take the points' precision and device
            coefficients.to(device=collocation.device, dtype=collocation.dtype)
        self.coefficients = coefficients
        if weighting is None or isinstance(weighting, Mapping):
            weighting = FixedWeights(weighting)
        weighting.check_names(self.term_names)
        self.weighting = weighting

    @property
    def term_names(self) -> list[str]:
        return [PDE_TERM, *self.conditions]

    def solution(self, x: torch.Tensor) -> torch.Tensor:
        """The approximate solution ``(n, m)`` at points ``x`` (n, d): the network's output,
        through the output transform if there is one; differentiable."""
        u = self.network(x)
        what = "the network"
        if self.output_transform is not None:
            u, what = self.output_transform(x, u), "the network with its output transform"
        if not isinstance(u, torch.Tensor) or u.ndim != 2 or u.shape[0] != len(x):
            shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise InvalidArgumentError(
                f"{what} must map (n, d) points to (n, m) outputs, got {shape} for {len(x)} points"
            )
        return u

    def pde_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The PDE residual at points ``x`` (n, d), as ``(n, k)``; differentiable."""
        x = x.detach().requires_grad_(True)
        u = self.solution(x)
        r = self.residual_fn(x, u, Derivatives(x, u))
        if isinstance(r, (list, tuple)):
            r = torch.stack(list(r), dim=1) if r else None
        if not isinstance(r, torch.Tensor) or r.ndim not in (1, 2) or r.shape[0] != len(x):
            shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
            raise InvalidArgumentError(
                f"the PDE residual must return shape ({len(x)},) or ({len(x)}, k) for {len(x)} "
                f"points, got {shape}"
            )
        return r.reshape(len(x), -1)

    def losses(self, collocation: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Each term's unweighted mean squared residual; the PDE term at ``collocation`` if
        given (e.g. a mini-batch of the collocation points), else at all of them."""
        points = self.collocation if collocation is None else collocation
        terms = {PDE_TERM: self.pde_residual(points).pow(2).mean()}
        for name, condition in self.conditions.items():
            terms[name] = condition.residual(self.solution).pow(2).mean()
        return terms

    def weights(self) -> dict[str, float]:
        return self.weighting.weights(self.term_names)

    def total(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of ``losses`` with the current weights."""
        weights = self.weights()
        return sum(weights[name] * value for name, value in losses.items())

    def loss(self) -> torch.Tensor:
        """The weighted loss (a scalar tensor)."""
        return self.total(self.losses())

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """The solution at ``x`` without gradients."""
        with torch.no_grad():
            return self.solution(x)

    def add_collocation(self, points: torch.Tensor) -> None:
        """Append ``points`` (n, d), which must lie in the domain, to the collocation points
        (see :func:`~kutta.pde.pinn.refinement.refine_by_residual`)."""
        self.domain.check_shape(points)
        self.domain.check_inside(points)
        if points.dtype != self.collocation.dtype:
            raise InvalidArgumentError(
                f"the new points are {points.dtype} but the collocation points are "
                f"{self.collocation.dtype}"
            )
        self.collocation = torch.cat([self.collocation, points.detach().to(self.collocation)])
