"""Derivatives of a network's output with respect to its input points, by autograd.

Points are rows: ``u`` is ``(n, m)`` (or ``(n,)``) computed row by row from ``x`` ``(n, d)``,
so the derivative of ``u[:, k].sum()`` with respect to ``x`` holds every row's own gradient
(rows must not mix, as they do not in an MLP; batch normalization would break this). Every
derivative is taken with ``create_graph=True``, so residuals built from them can be trained.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from kutta.errors import InvalidArgumentError


def _column(u: torch.Tensor, x: torch.Tensor, component: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise InvalidArgumentError(f"x must be a tensor of shape (n, d), got {_shape(x)}")
    if not x.requires_grad:
        raise InvalidArgumentError(
            "x must require gradients (x.requires_grad_()) before u is computed from it"
        )
    if not isinstance(u, torch.Tensor) or u.ndim not in (1, 2) or u.shape[0] != x.shape[0]:
        raise InvalidArgumentError(
            f"u must have shape (n,) or (n, m) with n = {x.shape[0]} rows like x, got {_shape(u)}"
        )
    u = u.reshape(len(u), -1)
    if not 0 <= component < u.shape[1]:
        raise InvalidArgumentError(f"component {component} out of range for u with {u.shape[1]}")
    return u[:, component]


def _shape(value: object) -> object:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _grad(column: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Every row's gradient of ``column`` (n,) with respect to its row of ``x``: ``(n, d)``."""
    # u may not depend on x at all (e.g. a derivative of a polynomial of lower degree): then
    # the derivative is zero, and so are all higher ones
    if not column.requires_grad:
        return torch.zeros_like(x)
    (grad,) = torch.autograd.grad(column.sum(), x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


def gradient(u: torch.Tensor, x: torch.Tensor, component: int = 0) -> torch.Tensor:
    """``(n, d)``: the gradient of ``u[:, component]`` at each point.

    Example:
        >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> gradient(x[:, :1] ** 2 * x[:, 1:], x).tolist()
        [[4.0, 1.0]]
    """
    return _grad(_column(u, x, component), x)


def partial(u: torch.Tensor, x: torch.Tensor, *axes: int, component: int = 0) -> torch.Tensor:
    """``(n,)``: the partial derivative of ``u[:, component]`` along ``axes`` (any order).

    ``partial(u, x, 0, 0)`` is ``u_xx``, ``partial(u, x, 0, 1)`` is ``u_xt``, ``partial(u, x)``
    is ``u`` itself.

    Example:
        >>> x = torch.tensor([[2.0, 3.0]], requires_grad=True)
        >>> partial(x[:, 0] ** 3 * x[:, 1], x, 0, 0, 1).tolist()
        [12.0]
    """
    value = _column(u, x, component)
    for axis in axes:
        if not 0 <= axis < x.shape[1]:
            raise InvalidArgumentError(
                f"axis {axis} out of range for points of dimension {x.shape[1]}"
            )
        value = _grad(value, x)[:, axis]
    return value


def laplacian(
    u: torch.Tensor, x: torch.Tensor, component: int = 0, axes: Iterable[int] | None = None
) -> torch.Tensor:
    """``(n,)``: the sum of second derivatives of ``u[:, component]`` over ``axes`` (default: all).

    For space-time points pass the spatial axes, e.g. ``axes=range(d - 1)``.

    Example:
        >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> laplacian((x**2).sum(dim=1), x).tolist()
        [4.0]
    """
    first = gradient(u, x, component)
    axes = range(x.shape[1]) if axes is None else axes
    return sum(_grad(first[:, axis], x)[:, axis] for axis in axes)


def divergence(v: torch.Tensor, x: torch.Tensor, axes: Iterable[int] | None = None) -> torch.Tensor:
    """``(n,)``: ``sum_i d v_i / d x_{axes[i]}`` of a vector field ``v`` (n, k).

    ``axes`` defaults to ``range(k)`` (k must not exceed the points' dimension).

    Example:
        >>> x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        >>> divergence(torch.cat([x[:, :1] ** 2, 3 * x[:, 1:]], dim=1), x).tolist()
        [5.0]
    """
    if not isinstance(v, torch.Tensor) or v.ndim != 2:
        raise InvalidArgumentError(f"v must have shape (n, k), got {_shape(v)}")
    axes = list(range(v.shape[1])) if axes is None else list(axes)
    if len(axes) != v.shape[1] or not all(0 <= a < x.shape[1] for a in axes):
        raise InvalidArgumentError(
            f"divergence pairs each of v's {v.shape[1]} components with an axis of x "
            f"(dimension {x.shape[1]}), got axes {axes}"
        )
    return sum(partial(v, x, axis, component=i) for i, axis in enumerate(axes))


class Derivatives:
    """Derivatives of ``u`` at ``x`` with a cache, handed to PDE residuals as ``ops``.

    Lower derivatives are reused: ``ops.partial(0, 0)`` differentiates the cached ``u_x``, and
    ``ops.partial(0)`` asked again costs nothing. Mixed partials are taken as symmetric
    (``u_xt == u_tx``), true for the smooth networks PINNs use.

    Example:
        >>> x = torch.tensor([[2.0, 3.0]], requires_grad=True)
        >>> ops = Derivatives(x, x[:, :1] ** 2 * x[:, 1:])
        >>> ops.partial(0).tolist(), ops.partial(0, 0).tolist(), ops.partial(1).tolist()
        ([12.0], [6.0], [4.0])
    """

    def __init__(self, x: torch.Tensor, u: torch.Tensor):
        _column(u, x, 0)  # validates shapes and that x requires gradients
        self.x, self.u = x, u.reshape(len(u), -1)
        self._cache: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def partial(self, *axes: int, component: int = 0) -> torch.Tensor:
        """``(n,)``: the derivative of ``u[:, component]`` along ``axes`` (any order)."""
        key = (component, tuple(sorted(axes)))
        if key in self._cache:
            return self._cache[key]
        if not axes:
            value = _column(self.u, self.x, component)
        else:
            if not all(0 <= a < self.x.shape[1] for a in axes):
                raise InvalidArgumentError(
                    f"axes {axes} out of range for points of dimension {self.x.shape[1]}"
                )
            lower, last = key[1][:-1], key[1][-1]
            gradient_of_lower = _grad(self.partial(*lower, component=component), self.x)
            # the whole gradient of the lower derivative comes for free: cache every axis of it
            for axis in range(self.x.shape[1]):
                self._cache[(component, tuple(sorted((*lower, axis))))] = gradient_of_lower[:, axis]
            value = gradient_of_lower[:, last]
        self._cache[key] = value
        return value

    def gradient(self, component: int = 0) -> torch.Tensor:
        """``(n, d)``: the gradient of ``u[:, component]``."""
        return torch.stack(
            [self.partial(a, component=component) for a in range(self.x.shape[1])], 1
        )

    def laplacian(self, component: int = 0, axes: Iterable[int] | None = None) -> torch.Tensor:
        """``(n,)``: the sum of second derivatives over ``axes`` (default: all axes)."""
        axes = range(self.x.shape[1]) if axes is None else axes
        return sum(self.partial(a, a, component=component) for a in axes)

    def divergence(
        self, components: Iterable[int] | None = None, axes: Iterable[int] | None = None
    ) -> torch.Tensor:
        """``(n,)``: ``sum_i d u_{components[i]} / d x_{axes[i]}`` (defaults: ``0..k-1`` both)."""
        components = list(range(self.u.shape[1])) if components is None else list(components)
        axes = list(range(len(components))) if axes is None else list(axes)
        if len(axes) != len(components):
            raise InvalidArgumentError("divergence needs one axis per component")
        return sum(self.partial(a, component=c) for c, a in zip(components, axes))
