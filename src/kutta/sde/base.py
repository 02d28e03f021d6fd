"""SDE objects: the user-facing base classes and the internal view the solvers use.

A user SDE has ``f(t, y)`` (drift, shape (batch, d)) and ``g(t, y)`` (diffusion: (batch, d) for
diagonal noise, (batch, d, m) otherwise), and the attributes ``noise_type`` and ``sde_type``.
Optionally it provides ``f_and_g``, ``g_prod(t, y, v)`` (diffusion times noise), ``f_and_g_prod``,
``prod(g, v)`` and ``h`` (prior drift, for logqp).

Example:
    >>> class OU(SDEIto):
    ...     def __init__(self):
    ...         super().__init__(noise_type="additive")
    ...     def f(self, t, y):
    ...         return -y
    ...     def g(self, t, y):
    ...         return torch.ones(*y.shape, 1)
"""

from __future__ import annotations

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.sde.settings import NOISE_TYPES, SDE_TYPES


class BaseSDE(nn.Module):
    """Base class of SDEs: validates and stores ``noise_type`` and ``sde_type``.

    Example:
        >>> class Scalar(BaseSDE):
        ...     def __init__(self):
        ...         super().__init__(noise_type="scalar", sde_type="stratonovich")
    """

    def __init__(self, noise_type: str, sde_type: str):
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise InvalidArgumentError(
                f"noise_type must be one of {NOISE_TYPES.all()}, got {noise_type!r}"
            )
        if sde_type not in SDE_TYPES:
            raise InvalidArgumentError(
                f"sde_type must be one of {SDE_TYPES.all()}, got {sde_type!r}"
            )
        self.noise_type = noise_type
        self.sde_type = sde_type


class SDEIto(BaseSDE):
    """An Itô SDE: ``class MySDE(SDEIto): ...; super().__init__(noise_type="diagonal")``."""

    def __init__(self, noise_type: str):
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.ito)


class SDEStratonovich(BaseSDE):
    """A Stratonovich SDE: ``super().__init__(noise_type="general")`` in the subclass."""

    def __init__(self, noise_type: str):
        super().__init__(noise_type=noise_type, sde_type=SDE_TYPES.stratonovich)


_RENAMABLE = {
    "drift": "f",
    "diffusion": "g",
    "prior_drift": "h",
    "diffusion_prod": "g_prod",
    "drift_and_diffusion": "f_and_g",
    "drift_and_diffusion_prod": "f_and_g_prod",
}


class RenamedSDE:
    """The user's SDE with methods looked up under other names (sdeint's ``names`` argument)."""

    def __init__(self, sde, names: dict[str, str]):
        unknown = sorted(set(names) - set(_RENAMABLE))
        if unknown:
            raise InvalidArgumentError(
                f"unknown keys {unknown} in names; valid keys are {sorted(_RENAMABLE)}"
            )
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        for key, standard in _RENAMABLE.items():
            source = names.get(key, standard)
            if hasattr(sde, source):
                setattr(self, standard, getattr(sde, source))


def batch_mvp(matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """(..., d, m) @ (..., m) -> (..., d)."""
    return torch.matmul(matrix, vector.unsqueeze(-1)).squeeze(-1)


class SDEView:
    """What the solvers call: f, g, products with noise, and the derivative terms of Milstein.

    Missing optional methods are derived from f and g once here, so the steps have no branches.
    """

    def __init__(self, sde):
        self.sde = sde
        self.noise_type, self.sde_type = sde.noise_type, sde.sde_type
        self.diagonal = sde.noise_type == NOISE_TYPES.diagonal
        if hasattr(sde, "prod"):
            self.prod = sde.prod
        else:
            self.prod = torch.mul if self.diagonal else batch_mvp
        self.f = getattr(sde, "f", None) or self._missing("f")
        self.g = getattr(sde, "g", None) or self._missing("g")
        if hasattr(sde, "f_and_g"):
            self.f_and_g = sde.f_and_g
            if not hasattr(sde, "f"):
                self.f = lambda t, y: sde.f_and_g(t, y)[0]
            if not hasattr(sde, "g"):
                self.g = lambda t, y: sde.f_and_g(t, y)[1]
        else:
            self.f_and_g = lambda t, y: (self.f(t, y), self.g(t, y))
        if hasattr(sde, "g_prod"):
            self.g_prod = sde.g_prod
        else:
            self.g_prod = lambda t, y, v: self.prod(self.g(t, y), v)
        if hasattr(sde, "f_and_g_prod"):
            self.f_and_g_prod = sde.f_and_g_prod
        elif hasattr(sde, "g_prod"):
            self.f_and_g_prod = lambda t, y, v: (self.f(t, y), sde.g_prod(t, y, v))
        else:
            self.f_and_g_prod = self._f_and_g_prod_from_g

    def increment(self, t, y: torch.Tensor, h: float, v: torch.Tensor) -> torch.Tensor:
        """``f h + g v``: the change over a step of size h with Brownian increment v."""
        f, g_v = self.f_and_g_prod(t, y, v)
        return h * f + g_v

    def _f_and_g_prod_from_g(self, t, y, v):
        f, g = self.f_and_g(t, y)
        return f, self.prod(g, v)

    @staticmethod
    def _missing(name: str):
        def fail(*args):
            raise InvalidArgumentError(f"this method needs the SDE to define `{name}`")

        return fail

    def g_dg_prod(
        self,
        t,
        y: torch.Tensor,
        g: torch.Tensor,
        v: torch.Tensor | None,
        g_at_y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(∂g/∂y · g) weighted by v (None: unweighted): the Milstein correction for diagonal,
        scalar and additive noise.

        Diagonal noise: component i is g_i ∂g_i/∂y_i v_i, exact when g_i depends on y only through
        y_i (the usual meaning of diagonal noise; the same assumption as torchsde). Scalar noise:
        (J_g g) v, a Jacobian-vector product. Additive noise: zero. ``g_at_y``: g already
        evaluated at ``y`` (which requires grad) with its graph, to save an evaluation.
        """
        if self.noise_type == NOISE_TYPES.additive:
            return torch.zeros_like(y)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            y_in = y if y.requires_grad else y.detach().requires_grad_(True)
            g_at = g_at_y if g_at_y is not None else self.g(t, y_in)
            if not g_at.requires_grad:  # g depends on neither y nor parameters
                return torch.zeros_like(y)
            if self.diagonal:
                cotangent = g_at if v is None else g_at * v
                (out,) = torch.autograd.grad(
                    g_at, y_in, cotangent, create_graph=create_graph, allow_unused=True
                )
                return torch.zeros_like(y) if out is None else out
            # Scalar noise: J g via the double-vjp trick (the vjp is linear in its cotangent).
            column = g_at[..., 0]
            cotangent = torch.zeros_like(column, requires_grad=True)
            (vjp,) = torch.autograd.grad(
                column, y_in, cotangent, create_graph=True, allow_unused=True
            )
            if vjp is None:
                return torch.zeros_like(y)
            (jvp,) = torch.autograd.grad(vjp, cotangent, g[..., 0], create_graph=create_graph)
        return jvp if v is None else jvp * v

    def lie_area_term(
        self, t, y: torch.Tensor, area: torch.Tensor, g_at_y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Σ_{k,l} (∂g_l/∂y · g_k) A_kl: the Lévy-area term of the log-ODE method (general noise)."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            y_in = y if y.requires_grad else y.detach().requires_grad_(True)
            g_at = g_at_y if g_at_y is not None else self.g(t, y_in)
            if self.diagonal:
                g_at = torch.diag_embed(g_at)
            directions = torch.matmul(g_at, area)  # column l: Σ_k g_k A_kl
            total = torch.zeros_like(y)
            if not g_at.requires_grad:  # g depends on neither y nor parameters
                return total
            for col in range(g_at.shape[-1]):
                column = g_at[..., col]
                cotangent = torch.zeros_like(column, requires_grad=True)
                (vjp,) = torch.autograd.grad(
                    column, y_in, cotangent, create_graph=True, allow_unused=True
                )
                if vjp is None:
                    continue
                (jvp,) = torch.autograd.grad(
                    vjp, cotangent, directions[..., col], create_graph=create_graph
                )
                total = total + jvp
        return total


def stable_division(a: torch.Tensor, b: torch.Tensor, epsilon: float = 1e-7) -> torch.Tensor:
    """a / b with |b| clamped away from zero (sign kept)."""
    b = torch.where(b.abs().detach() > epsilon, b, torch.full_like(b, epsilon) * b.sign())
    return a / b


class LogqpSDE:
    """The SDE with one more state channel accumulating ½|u|², u = g⁻¹(f - h) (the KL integrand)."""

    def __init__(self, view: SDEView):
        sde = view.sde
        if not hasattr(sde, "h"):
            raise InvalidArgumentError(
                "logqp=True needs the SDE to define the prior drift `h(t, y)`"
            )
        self.base, self.h = view, sde.h
        self.noise_type, self.sde_type = view.noise_type, view.sde_type

    def _control(self, t, y, f, g):
        if self.base.diagonal:
            return stable_division(f - self.h(t, y), g)
        return batch_mvp(torch.linalg.pinv(g), f - self.h(t, y))

    def f_and_g(self, t, y_aug):
        y = y_aug[:, :-1]
        f, g = self.base.f_and_g(t, y)
        u = self._control(t, y, f, g)
        f_aug = torch.cat([f, 0.5 * (u * u).sum(dim=1, keepdim=True)], dim=1)
        zero_shape = (g.shape[0], 1) if self.base.diagonal else (g.shape[0], 1, g.shape[-1])
        return f_aug, torch.cat([g, g.new_zeros(zero_shape)], dim=1)

    def f(self, t, y_aug):
        return self.f_and_g(t, y_aug)[0]

    def g(self, t, y_aug):
        y = y_aug[:, :-1]
        g = self.base.g(t, y)
        zero_shape = (g.shape[0], 1) if self.base.diagonal else (g.shape[0], 1, g.shape[-1])
        return torch.cat([g, g.new_zeros(zero_shape)], dim=1)
