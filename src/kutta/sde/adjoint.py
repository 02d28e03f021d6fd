"""sdeint_adjoint: gradients by the stochastic adjoint, in memory independent of the step count.

Two strategies:
- ``method="reversible_heun"`` (adjoint_method "adjoint_reversible_heun"): the forward steps are
  undone algebraically in the backward pass and differentiated exactly, so the gradients equal
  backpropagation's to round-off (Kidger et al. 2021), with one f/g evaluation per step each way.
- otherwise, the continuous adjoint (Li et al. 2020): the Stratonovich adjoint SDE for
  (y, dL/dy, dL/dθ) is solved backwards in time on the same Brownian path. Itô SDEs are converted
  to Stratonovich form for the backward solve (drift f - ½ Σ_k (∂g_k/∂y) g_k).

Example:
    >>> ys = sdeint_adjoint(sde, y0, ts, method="reversible_heun", dt=0.01)  # doctest: +SKIP
    >>> ys[-1].sum().backward()  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.sde.base import SDEView
from kutta.sde.brownian import ReverseBrownian
from kutta.sde.compiled import (
    COMPILE,
    adjoint_midpoint_step,
    adjoint_target,
    check_compile_option,
    reversible_heun_back,
    reversible_heun_step,
)
from kutta.sde.loop import PrefetchedBrownian, integrate, step_grid
from kutta.sde.methods import METHOD_CLASSES, Method, Midpoint
from kutta.sde.sdeint import prepare, split_return
from kutta.sde.settings import METHODS, NOISE_TYPES, SDE_TYPES

_CONTINUOUS_ADJOINT_METHODS = (METHODS.midpoint, METHODS.heun, METHODS.euler_heun)


def _prod_transpose(view: SDEView, cotangent: torch.Tensor, g: torch.Tensor, dw: torch.Tensor):
    """Cotangent of g in prod(g, dw) given the cotangent of the product (prod is linear in g)."""
    if view.diagonal:
        return cotangent * dw
    return cotangent.unsqueeze(-1) * dw.unsqueeze(-2)


def _vjp(output, inputs, cotangent, retain_graph=False):
    if not output.requires_grad:
        return [None] * len(inputs)
    return torch.autograd.grad(
        output, inputs, cotangent, allow_unused=True, retain_graph=retain_graph
    )


def _grad(outputs, inputs, cotangents):
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o.requires_grad]
    if not pairs or not inputs:
        return [None] * len(inputs)
    return torch.autograd.grad(
        [o for o, _ in pairs], inputs, [c for _, c in pairs], allow_unused=True, retain_graph=False
    )


class _ReversibleHeunAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem, times, out_steps, targets, y0, *params):
        view = problem.sde
        bm = PrefetchedBrownian(problem.bm, list(zip(times[:-1], times[1:])), {})
        forward_target = targets[0] if targets else None
        with torch.no_grad():
            z = y0
            t = times[0]
            f, g = view.f_and_g(torch.scalar_tensor(t, dtype=y0.dtype, device=y0.device), y0)
            y = y0
            outputs = [y0]
            output_steps = set(out_steps)
            for n in range(len(times) - 1):
                t0, t1 = times[n], times[n + 1]
                h = t1 - t0
                dw = bm(t0, t1)
                if forward_target is not None:
                    y, z, f, g = reversible_heun_step(forward_target, t0, t1, y, z, f, g, dw)
                    if n + 1 in output_steps:
                        outputs.append(y)
                    continue
                # Halving and doubling are exact, so the fused forms below round as the plain
                # ones (2 y - z, ... + 0.5 prod(...)) do.
                z_next = torch.add(y, y).sub_(z).add_(h * f).add_(view.prod(g, dw))
                f_next, g_next = view.f_and_g(
                    torch.scalar_tensor(t1, dtype=y0.dtype, device=y0.device), z_next
                )
                y = torch.add(y + (0.5 * h) * (f + f_next), view.prod(g + g_next, dw), alpha=0.5)
                z, f, g = z_next, f_next, g_next
                if n + 1 in output_steps:
                    outputs.append(y)
        ctx.problem, ctx.times, ctx.out_steps, ctx.params = problem, times, out_steps, params
        ctx.backward_target = targets[1] if targets else None
        ctx.final = (y, z)
        ctx.extra = (z, f, g)
        return torch.stack(outputs)

    @staticmethod
    def backward(ctx, grad_ys):
        problem, times, params = ctx.problem, ctx.times, ctx.params
        view, bm = problem.sde, _backward_brownian(problem.bm, times)
        out_index = {step: k for k, step in enumerate(ctx.out_steps)}
        y, z = ctx.final
        dtype, device = y.dtype, y.device

        def evaluate(t, state):
            leaf = state.detach().requires_grad_(True)
            with torch.enable_grad():
                f_val, g_val = view.f_and_g(
                    torch.scalar_tensor(t, dtype=dtype, device=device), leaf
                )
            return leaf, f_val, g_val

        n_last = len(times) - 1
        z_leaf, f, g = evaluate(times[n_last], z)
        adj_y = grad_ys[out_index[n_last]].clone()
        adj_z = torch.zeros_like(adj_y)
        adj_f = torch.zeros_like(adj_y)
        adj_g = torch.zeros_like(g)
        adj_params = [torch.zeros_like(p) for p in params]

        def push(z_leaf, f, g, adj_f, adj_g):
            grads = _grad((f, g), (z_leaf, *params), (adj_f, adj_g))
            used = [(total, grad) for total, grad in zip(adj_params, grads[1:]) if grad is not None]
            if used:  # one call for all parameters: the same sums, less dispatch per step
                torch._foreach_add_([total for total, _ in used], [grad for _, grad in used])
            return grads[0] if grads[0] is not None else torch.zeros_like(z_leaf)

        y = y.detach()
        if ctx.backward_target is not None:
            return _compiled_reversible_heun_backward(
                ctx, grad_ys, out_index, (y, z_leaf, f, g), adj_y, adj_params, push
            )
        for n in range(n_last - 1, -1, -1):
            t0, t1 = times[n], times[n + 1]
            h = t1 - t0
            dw = bm(t0, t1)
            # y_{n+1} uses f_{n+1}, g_{n+1} (½ each): their cotangents gain that share.
            adj_f = adj_f + (0.5 * h) * adj_y
            adj_g = adj_g + _prod_transpose(view, 0.5 * adj_y, g, dw)
            adj_z = adj_z + push(z_leaf, f, g, adj_f, adj_g)
            # Undo the step: z_n from (y, z, f, g)_{n+1}, then f_n, g_n, then y_n.
            # (Fused forms with exact halving and doubling: the plain forms' rounding.)
            with torch.no_grad():
                z_prev = torch.add(y, y).sub_(z_leaf.detach())
                z_prev.sub_(h * f.detach()).sub_(view.prod(g.detach(), dw))
            z_leaf_prev, f_prev, g_prev = evaluate(t0, z_prev)
            with torch.no_grad():
                y = torch.sub(y - (0.5 * h) * (f_prev + f), view.prod(g_prev + g, dw), alpha=0.5)
            # Cotangents of (y, z, f, g)_n through z_{n+1} = 2 y_n - z_n + h f_n + prod(g_n, dw)
            # and the remaining ½ h f_n + ½ prod(g_n, dw) of y_{n+1}.
            combined = torch.add(adj_z, adj_y, alpha=0.5)
            adj_f = h * combined
            adj_g = _prod_transpose(view, combined, g_prev, dw)
            adj_y = torch.add(adj_y, adj_z, alpha=2)
            adj_z = -adj_z
            if n in out_index and n != 0:
                adj_y = adj_y + grad_ys[out_index[n]]
            z_leaf, f, g = z_leaf_prev, f_prev, g_prev
        adj_z = adj_z + push(z_leaf, f, g, adj_f, adj_g)
        adj_y0 = adj_y + adj_z + grad_ys[0]
        return (None, None, None, None, adj_y0, *adj_params)


def _compiled_reversible_heun_backward(ctx, grad_ys, out_index, last, adj_y, adj_params, push):
    """The backward pass with compiled steps (kutta.sde.compiled.reversible_heun_back): the
    last step's share of the cotangents of (f, g)_N is pushed eagerly, every earlier
    vector-Jacobian product inside the compiled step that recovers (z, f, g)_n."""
    problem, times, params = ctx.problem, ctx.times, ctx.params
    view, bm = problem.sde, _backward_brownian(problem.bm, times)
    y, z_leaf, f, g = last
    n_last = len(times) - 1
    dw = bm(times[n_last - 1], times[n_last])
    h = times[n_last] - times[n_last - 1]
    adj_f = (0.5 * h) * adj_y
    adj_g = _prod_transpose(view, 0.5 * adj_y, g, dw)
    adj_z = push(z_leaf, f, g, adj_f, adj_g)
    state = (y, z_leaf.detach(), f.detach(), g.detach())
    adjoints = (adj_y, adj_z, adj_params)
    for n in range(n_last - 1, -1, -1):
        dw_before = bm(times[n - 1], times[n]) if n > 0 else None
        grad_out = grad_ys[out_index[n]] if n in out_index and n != 0 else None
        t_before = times[n - 1] if n > 0 else None
        state, adjoints = reversible_heun_back(
            ctx.backward_target,
            params,
            (times[n], times[n + 1], t_before),
            state,
            adjoints,
            dw,
            dw_before,
            grad_out,
        )
        dw = dw_before
    adj_y, adj_z, adj_params = adjoints
    adj_y0 = adj_y + adj_z + grad_ys[0]
    return (None, None, None, None, adj_y0, *adj_params)


def _backward_brownian(bm, times):
    """``bm`` queried ahead over the steps in the backward pass's order (last step first)."""
    return PrefetchedBrownian(bm, list(zip(times[:-1], times[1:]))[::-1], {})


class _AdjointSDE:
    """The Stratonovich adjoint SDE of ``view`` in reversed time s = -t, on the flat state
    (y, a = dL/dy, dL/dθ). Its Brownian motion is ReverseBrownian(bm)."""

    noise_type, sde_type = NOISE_TYPES.general, SDE_TYPES.stratonovich

    def __init__(self, view: SDEView, params: tuple, shape: torch.Size):
        self.view, self.params, self.shape = view, params, shape
        self.numel = shape.numel()
        self.ito = view.sde_type == SDE_TYPES.ito

    def _split(self, state):
        y = state[: self.numel].view(self.shape)
        a = state[self.numel : 2 * self.numel].view(self.shape)
        return y, a

    def _drift_and_noise(self, t, y, v):
        """Stratonovich drift and g·v at y (which requires grad), evaluating g once."""
        uses_g_prod = hasattr(self.view.sde, "g_prod") and not self.ito
        if self.view.noise_type == NOISE_TYPES.additive or uses_g_prod:
            return self.view.f(t, y), self.view.g_prod(t, y, v)
        f, g = self.view.f_and_g(t, y)
        g_v = self.view.prod(g, v)
        if not self.ito:
            return f, g_v
        if self.view.noise_type in (NOISE_TYPES.diagonal, NOISE_TYPES.scalar):
            correction = self.view.g_dg_prod(t, y, g, None, g_at_y=g)
        else:
            eye = torch.eye(g.shape[-1], dtype=y.dtype, device=y.device).expand(g.shape[0], -1, -1)
            correction = self.view.lie_area_term(t, y, eye, g_at_y=g)
        return torch.sub(f, correction, alpha=0.5), g_v  # f - 0.5 * correction, one op

    def f_and_g_prod(self, s, state, v):
        t = -s
        y, a = self._split(state)
        with torch.enable_grad():
            y_in = y.detach().requires_grad_(True)
            f, g_v = self._drift_and_noise(t, y_in, v)
            inputs = (y_in, *self.params)
            drift_grads = _vjp(f, inputs, a, retain_graph=True)
            noise_grads = _vjp(g_v, inputs, a)
        drift = self._flat(-f.detach(), drift_grads, y)
        noise = self._flat(-g_v.detach(), noise_grads, y)
        return drift, noise

    def increment(self, s, state, h, v, with_params: bool = True):
        """``h drift + noise`` with one vector-Jacobian product instead of one for each.

        Without ``with_params`` the parameter-gradient part is left zero (and not computed).
        """
        t = -s
        y, a = self._split(state)
        y_in = y.detach().requires_grad_(True)
        inputs = (y_in, *self.params) if with_params else (y_in,)
        with torch.enable_grad():
            f, g_v = self._drift_and_noise(t, y_in, v)
            change = h * f + g_v
            grads = _vjp(change, inputs, a)
        return self._flat(-change.detach(), grads, y)

    def _flat(self, y_part, grads, y):
        """The flat state's change; missing gradients (unused, or not asked for) are zero."""
        pieces = [y_part.reshape(-1)]
        for k, like in enumerate((y, *self.params)):
            grad = grads[k] if k < len(grads) else None
            pieces.append((torch.zeros_like(like) if grad is None else grad).reshape(-1))
        return torch.cat(pieces)

    def f(self, s, state):
        raise InvalidArgumentError("the adjoint SDE is solved with f_and_g_prod-based methods only")

    def g_prod(self, s, state, v):
        return self.f_and_g_prod(s, state, v)[1]


class _AdjointMidpoint(Midpoint):
    """The midpoint method on the adjoint SDE. The adjoint field reads y and dL/dy only, never
    the accumulated parameter gradients, so the half step skips their vector-Jacobian product
    (about a fifth of its cost): the same result, bit for bit.

    With ``compile`` the whole step is one compiled graph where :func:`adjoint_target` allows
    (see kutta.sde.compiled), the same arithmetic to round-off."""

    compilable = True

    def __init__(self, sde, bm, options):
        super().__init__(sde, bm, options)
        if self.compiled is not None:
            adjoint_sde = sde.sde
            self.compiled = adjoint_target(adjoint_sde.view, adjoint_sde.params)

    def step(self, t0, t1, y, extra):
        h = t1 - t0
        dw = self.bm(t0, t1)
        if self.compiled is not None:
            adjoint_sde = self.sde.sde
            step = adjoint_midpoint_step(
                self.compiled, adjoint_sde.params, adjoint_sde.shape, t0, t1, y, dw
            )
            return step, extra
        half_step = self.sde.increment(self.time(t0, y), y, h, dw, with_params=False)
        y_mid = torch.add(y, half_step, alpha=0.5)  # y + 0.5 * half_step, one op
        return y + self.sde.increment(self.time(t0 + 0.5 * h, y), y_mid, h, dw), extra


_ADJOINT_METHODS = {**METHOD_CLASSES[SDE_TYPES.stratonovich], METHODS.midpoint: _AdjointMidpoint}


class _SDEViewOf:
    """Minimal SDEView-like wrapper for the adjoint SDE (only the product-based calls)."""

    def __init__(self, adjoint_sde: _AdjointSDE):
        self.sde = adjoint_sde
        self.noise_type, self.sde_type = adjoint_sde.noise_type, adjoint_sde.sde_type
        self.diagonal = False
        self.f_and_g_prod = adjoint_sde.f_and_g_prod
        self.g_prod = adjoint_sde.g_prod
        self.increment = adjoint_sde.increment


class _ContinuousAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem, stepper, settings, y0, *params):
        with torch.no_grad():
            extra0 = stepper.init(problem.ts[0], y0)
            ys, extra = integrate(stepper, y0, problem.ts, extra0, **settings["forward"])
        settings["final_extra"] = extra
        ctx.problem, ctx.settings, ctx.params = problem, settings, params
        ctx.save_for_backward(ys)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        (ys,) = ctx.saved_tensors
        problem, settings, params = ctx.problem, ctx.settings, ctx.params
        shape = ys.shape[1:]
        adjoint_sde = _AdjointSDE(problem.sde, params, shape)
        view = _SDEViewOf(adjoint_sde)
        method_cls = _ADJOINT_METHODS[settings["adjoint_method"]]
        stepper = method_cls(view, ReverseBrownian(problem.bm), settings["adjoint_options"])
        adj_y = grad_ys[-1]
        adj_params = [torch.zeros_like(p) for p in params]
        times = problem.ts
        for i in range(len(times) - 1, 0, -1):
            state = torch.cat(
                [
                    ys[i].reshape(-1),
                    adj_y.reshape(-1),
                    *[torch.zeros_like(p).reshape(-1) for p in params],
                ]
            )
            out, _ = integrate(
                stepper, state, [-times[i], -times[i - 1]], (), **settings["backward"]
            )
            final = out[-1]
            numel = shape.numel()
            adj_y = final[numel : 2 * numel].view(shape) + grad_ys[i - 1]
            offset = 2 * numel
            for k, p in enumerate(params):
                adj_params[k] += final[offset : offset + p.numel()].view_as(p)
                offset += p.numel()
        return (None, None, None, adj_y, *adj_params)


def sdeint_adjoint(
    sde,
    y0: torch.Tensor,
    ts,
    bm=None,
    method: str | None = None,
    adjoint_method: str | None = None,
    dt: float = 1e-3,
    adaptive: bool = False,
    adjoint_adaptive: bool = False,
    rtol: float = 1e-5,
    adjoint_rtol: float = 1e-5,
    atol: float = 1e-4,
    adjoint_atol: float = 1e-4,
    dt_min: float = 1e-5,
    options: dict | None = None,
    adjoint_options: dict | None = None,
    adjoint_params=None,
    names: dict[str, str] | None = None,
    logqp: bool = False,
    extra: bool = False,
    extra_solver_state: tuple | None = None,
    **unused_kwargs: Any,
):
    """sdeint whose backward pass solves the adjoint SDE instead of storing the forward graph.

    Arguments follow torchsde.sdeint_adjoint. ``adjoint_params`` defaults to the parameters of
    ``sde`` (an nn.Module). With ``method="reversible_heun"`` the default adjoint method is
    'adjoint_reversible_heun' (exact gradients); otherwise 'midpoint' (also 'heun', 'euler_heun').
    Gradients flow to y0 and the adjoint parameters, not through a returned extra state.
    ``options={"compile": True}`` compiles the forward steps ('euler', 'reversible_heun') and,
    unless ``adjoint_options={"compile": False}``, the backward steps (the 'midpoint' adjoint
    method and 'adjoint_reversible_heun'); see :mod:`kutta.sde.compiled`.

    Example:
        >>> ys = sdeint_adjoint(sde, y0, [0.0, 1.0], method="reversible_heun", dt=0.01)  # doctest: +SKIP
    """
    if unused_kwargs:
        raise InvalidArgumentError(
            f"sdeint_adjoint got unexpected keyword arguments {sorted(unused_kwargs)}"
        )
    if adjoint_params is None:
        if not isinstance(sde, nn.Module):
            raise InvalidArgumentError(
                "sde is not an nn.Module, so pass adjoint_params explicitly (adjoint_params=() if none)"
            )
        adjoint_params = tuple(sde.parameters())
    params = tuple(p for p in adjoint_params if p.requires_grad)
    if extra_solver_state is not None:
        raise InvalidArgumentError(
            "extra_solver_state is only supported by sdeint, not sdeint_adjoint"
        )
    problem = prepare(sde, y0, ts, bm, method, dt, adaptive, names, logqp)
    dt = float(dt)
    reversible = problem.method_cls.name == METHODS.reversible_heun
    if adjoint_method is None:
        adjoint_method = METHODS.adjoint_reversible_heun if reversible else METHODS.midpoint
    if adjoint_method == METHODS.adjoint_reversible_heun:
        if not reversible:
            raise InvalidArgumentError(
                "adjoint_method='adjoint_reversible_heun' needs method='reversible_heun'"
            )
        if adaptive or adjoint_adaptive:
            raise InvalidArgumentError(
                "the reversible Heun adjoint replays the forward steps and supports fixed steps only; "
                "use adaptive=False, or another adjoint_method"
            )
        times, out_steps = step_grid(problem.ts, dt)
        targets = _reversible_heun_targets(problem, options, adjoint_options, params)
        ys = _ReversibleHeunAdjoint.apply(problem, times, out_steps, targets, problem.y0, *params)
        # The extra state is recomputed cheaply by a forward-only pass when asked for.
        extra_state = _final_extra(problem, options, dt) if extra else None
        return split_return(ys, extra_state, extra, logqp)
    if adjoint_method not in _CONTINUOUS_ADJOINT_METHODS:
        raise InvalidArgumentError(
            f"adjoint_method {adjoint_method!r} is not supported; use one of "
            f"{sorted(_CONTINUOUS_ADJOINT_METHODS)} (or 'adjoint_reversible_heun' with method='reversible_heun')"
        )
    stepper: Method = problem.method_cls(problem.sde, problem.bm, dict(options or {}))
    adjoint_options = dict(adjoint_options or {})
    if stepper.opts.get(COMPILE) and _ADJOINT_METHODS[adjoint_method].compilable:
        adjoint_options.setdefault(COMPILE, True)  # options={"compile": True} compiles both ways
    settings = {
        "forward": {"dt": dt, "adaptive": adaptive, "rtol": rtol, "atol": atol, "dt_min": dt_min},
        "backward": {
            "dt": dt,
            "adaptive": adjoint_adaptive,
            "rtol": adjoint_rtol,
            "atol": adjoint_atol,
            "dt_min": dt_min,
        },
        "adjoint_method": adjoint_method,
        "adjoint_options": adjoint_options,
    }
    ys = _ContinuousAdjoint.apply(problem, stepper, settings, problem.y0, *params)
    extra_state = settings["final_extra"] if extra else None
    return split_return(ys, extra_state, extra, logqp)


def _reversible_heun_targets(problem, options, adjoint_options, params):
    """The compiled forward and backward steps' targets of the reversible Heun adjoint
    (``options={"compile": True}``; ``adjoint_options`` may turn the backward one off), or
    None for eager steps (each target may be None on its own, see kutta.sde.compiled)."""
    stepper = problem.method_cls(problem.sde, problem.bm, dict(options or {}))  # validates
    adjoint_options = dict(adjoint_options or {})
    unknown = sorted(set(adjoint_options) - {COMPILE})
    if unknown:
        raise InvalidArgumentError(
            f"adjoint_method 'adjoint_reversible_heun' got unknown adjoint_options {unknown}; "
            f"valid: ['{COMPILE}']"
        )
    forward = bool(stepper.opts.get(COMPILE, False))
    backward = check_compile_option(adjoint_options.get(COMPILE, forward))
    if not (forward or backward):
        return None
    backward_target = adjoint_target(problem.sde, params, continuous=False) if backward else None
    return stepper.compiled, backward_target


def _final_extra(problem, options, dt):
    stepper = problem.method_cls(problem.sde, problem.bm, dict(options or {}))
    with torch.no_grad():
        _, extra = integrate(
            stepper, problem.y0, problem.ts, stepper.init(problem.ts[0], problem.y0), dt=dt
        )
    return extra
