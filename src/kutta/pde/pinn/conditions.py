"""Conditions a PINN must satisfy at given points, each as a residual that should be zero.

Each condition holds its points (checked against the domain on construction) and computes an
``(n,)`` residual from a network (any function of the points, e.g. the problem's network with its
output transform); the problem squares and averages it into a loss term. Target
values are given as a number, a tensor of one value per point, or a function of the points,
and are evaluated once on construction.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn.domains import Box, Domain, SpaceTime
from kutta.pde.pinn.ops import gradient, partial

Target = float | torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
#: the solution a condition constrains: points (n, d) -> outputs (n, m)
Network = nn.Module | Callable[[torch.Tensor], torch.Tensor]


def _target_values(target: Target, points: torch.Tensor, what: str) -> torch.Tensor:
    """The target as an ``(n,)`` tensor of the points' dtype and device."""
    if callable(target):
        with torch.no_grad():
            target = target(points)
    values = torch.as_tensor(target, dtype=points.dtype, device=points.device)
    if values.ndim == 0:
        return values.expand(len(points)).clone()
    if values.shape not in ((len(points),), (len(points), 1)):
        raise InvalidArgumentError(
            f"{what}: the target must give one value per point, shape ({len(points)},) or "
            f"({len(points)}, 1), got {tuple(values.shape)}"
        )
    return values.reshape(-1)


def _network_column(network: Network, x: torch.Tensor, component: int) -> torch.Tensor:
    u = network(x)
    if u.ndim != 2 or u.shape[0] != len(x) or not 0 <= component < u.shape[1]:
        raise InvalidArgumentError(
            f"the network must map (n, d) points to (n, m) outputs with m > {component}, "
            f"got {tuple(u.shape)} for {len(x)} points"
        )
    return u[:, component]


class Condition(nn.Module):
    """A residual ``(n,)`` at fixed points; its loss is the mean square of the residual."""

    points: torch.Tensor

    def residual(self, network: Network) -> torch.Tensor:
        raise NotImplementedError


def _checked_points(points: torch.Tensor, domain: Domain) -> torch.Tensor:
    domain.check_shape(points)
    return points.detach()


class DirichletBC(Condition):
    """``u[:, component] = target`` at points on the domain's boundary.

    Example:
        >>> from kutta.pde.pinn.domains import Interval
        >>> bc = DirichletBC(Interval(0.0, 1.0), torch.tensor([[0.0], [1.0]]), 0.0)
        >>> bc.residual(lambda x: x + 2.0).tolist()
        [2.0, 3.0]
    """

    def __init__(self, domain: Domain, points: torch.Tensor, target: Target, component: int = 0):
        super().__init__()
        points = _checked_points(points, domain)
        domain.check_on_boundary(points)
        self.register_buffer("points", points)
        self.register_buffer("target", _target_values(target, points, "DirichletBC"))
        self.component = component

    def residual(self, network: Network) -> torch.Tensor:
        return _network_column(network, self.points, self.component) - self.target


class NeumannBC(Condition):
    """``du/dn = target`` (outward normal derivative) at points on the domain's boundary.

    Example:
        >>> from kutta.pde.pinn.domains import Interval
        >>> bc = NeumannBC(Interval(0.0, 1.0), torch.tensor([[0.0], [1.0]]), 1.0)
        >>> bc.residual(lambda x: 3.0 * x).tolist()  # du/dn = -3 at 0, +3 at 1
        [-4.0, 2.0]
    """

    def __init__(self, domain: Domain, points: torch.Tensor, target: Target, component: int = 0):
        super().__init__()
        points = _checked_points(points, domain)
        self.register_buffer("points", points)
        self.register_buffer("normals", domain.boundary_normal(points))
        self.register_buffer("target", _target_values(target, points, "NeumannBC"))
        self.component = component

    def residual(self, network: Network) -> torch.Tensor:
        x = self.points.clone().requires_grad_(True)
        u = _network_column(network, x, self.component)
        return (gradient(u, x) * self.normals).sum(dim=1) - self.target


class PeriodicBC(Condition):
    """``d^k u / dx_axis^k`` equal at both ends of ``axis``; ``points`` lie on the low face.

    Each point is paired with its mirror on the high face. Use ``derivative_order=0`` and ``1``
    together for a second-order equation.

    Example:
        >>> from kutta.pde.pinn.domains import Interval
        >>> bc = PeriodicBC(Interval(0.0, 1.0), torch.tensor([[0.0]]), axis=0)
        >>> bc.residual(lambda x: torch.cos(2 * torch.pi * x)).abs().item() < 1e-6
        True
    """

    def __init__(
        self,
        domain: Domain,
        points: torch.Tensor,
        axis: int,
        derivative_order: int = 0,
        component: int = 0,
    ):
        super().__init__()
        points = _checked_points(points, domain)
        space = domain.space if isinstance(domain, SpaceTime) else domain
        if not isinstance(space, Box):
            raise InvalidArgumentError(
                f"PeriodicBC pairs opposite faces of a box, got {type(space).__name__}"
            )
        if not 0 <= axis < space.dim:
            raise InvalidArgumentError(f"axis {axis} is not a spatial axis of {domain!r}")
        if derivative_order < 0:
            raise InvalidArgumentError(f"derivative_order must be >= 0, got {derivative_order}")
        domain.check_inside(points)
        low, high = float(space.low[axis]), float(space.high[axis])
        if not torch.allclose(points[:, axis], torch.full_like(points[:, axis], low)):
            raise InvalidArgumentError(
                f"PeriodicBC points must lie on the low face x[{axis}] = {low:g} of {domain!r}"
            )
        mirror = points.clone()
        mirror[:, axis] = high
        self.register_buffer("points", points)
        self.register_buffer("mirror", mirror)
        self.axis, self.derivative_order, self.component = axis, derivative_order, component

    def residual(self, network: Network) -> torch.Tensor:
        both = torch.cat([self.points, self.mirror]).requires_grad_(self.derivative_order > 0)
        u = _network_column(network, both, self.component)
        value = (
            partial(u, both, *[self.axis] * self.derivative_order) if self.derivative_order else u
        )
        n = len(self.points)
        return value[:n] - value[n:]


class InitialCondition(Condition):
    """``u[:, component](x, t0) = target`` at points of a space-time domain's initial slice.

    Example:
        >>> from kutta.pde.pinn.domains import Interval, SpaceTime
        >>> domain = SpaceTime(Interval(-1.0, 1.0), 0.0, 1.0)
        >>> ic = InitialCondition(domain, domain.sample_initial(4), lambda x: -torch.sin(torch.pi * x[:, 0]))
        >>> ic.target.shape
        torch.Size([4])
    """

    def __init__(self, domain: SpaceTime, points: torch.Tensor, target: Target, component: int = 0):
        super().__init__()
        if not isinstance(domain, SpaceTime):
            raise InvalidArgumentError(
                f"an initial condition needs a SpaceTime domain, got {type(domain).__name__}"
            )
        points = _checked_points(points, domain)
        domain.check_initial(points)
        self.register_buffer("points", points)
        self.register_buffer("target", _target_values(target, points, "InitialCondition"))
        self.component = component

    def residual(self, network: Network) -> torch.Tensor:
        return _network_column(network, self.points, self.component) - self.target


class Observations(Condition):
    """Measured values ``u[:, component](points) = values`` anywhere in the domain (data).

    Example:
        >>> from kutta.pde.pinn.domains import Box
        >>> data = Observations(Box([0.0], [1.0]), torch.tensor([[0.5]]), torch.tensor([1.0]))
        >>> data.residual(lambda x: 2 * x).tolist()
        [0.0]
    """

    def __init__(self, domain: Domain, points: torch.Tensor, values: Target, component: int = 0):
        super().__init__()
        points = _checked_points(points, domain)
        domain.check_inside(points)
        self.register_buffer("points", points)
        self.register_buffer("target", _target_values(values, points, "Observations"))
        self.component = component

    def residual(self, network: Network) -> torch.Tensor:
        return _network_column(network, self.points, self.component) - self.target
