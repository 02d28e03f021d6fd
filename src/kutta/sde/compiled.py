"""Optional ``torch.compile``-d SDE steps: ``options={"compile": True}``.

Why: a fixed SDE step on a small neural SDE is a dozen small operations around two MLP calls;
at batch 256 (bench_sde's neural SDE) their dispatch and unfused elementwise kernels are about
a sixth of an Euler step's CPU time and a third to a half of an adjoint step's. Compiled, an
Euler–Maruyama or reversible Heun step (drift, diffusion, the noise product and the update) is
one graph (fixed Euler–Maruyama steps without autograd: :data:`EULER_CHUNK` steps, unrolled,
per graph, which saves the per-call cost of a graph); a step of the stochastic adjoint's
backward midpoint method (two adjoint increments, each a vector-Jacobian product through drift
and diffusion, for an Itô SDE through the Itô-to-Stratonovich correction too) and a backward step of the reversible Heun adjoint are each
one graph of forward and backward kernels, written with ``torch.func`` because
``torch.autograd.grad`` cannot be traced. The Brownian increments are drawn eagerly and passed
in. The steps are traced with ``torch._dynamo.config.allow_unspec_int_on_nn_module = True`` (SDEs
that count their calls, ``self.nfe += 1``, would recompile every step otherwise), set only while
dynamo traces them, as in :mod:`kutta.solvers.compiled`.

As in :mod:`kutta.solvers.compiled`: the traced function calls the user's own SDE object, whose
identity is stable across solves (wrappers made per solve, as ``names=...`` and ``logqp=True``
make, would recompile every solve, so those solves take the eager step, which computes the same
thing); times and step sizes are 0-dim tensors, never host floats; each step kind and
:class:`~kutta.solvers.compiled.GradMode` has a function (code object) of its own, because the
graphs of one function share torch's recompile limit of 8.

The adjoint steps reparametrize the SDE with ``torch.func.functional_call``, so they need an
``nn.Module`` SDE whose adjoint parameters are its own parameters and that does not override
``g_prod``/``f_and_g_prod``; the continuous adjoint's also needs non-additive noise, diagonal for
an Itô SDE (the cases whose eager step evaluates ``f_and_g``). Otherwise the step is eager.

Example:
    >>> import torch, kutta.sde as torchsde
    >>> class OU(torchsde.SDEIto):
    ...     def __init__(self):
    ...         super().__init__(noise_type="diagonal")
    ...     def f(self, t, y):
    ...         return -y
    ...     def g(self, t, y):
    ...         return 0.1 * torch.ones_like(y)
    >>> sde, y0 = OU(), torch.ones(4, 2)
    >>> bm = torchsde.BrownianInterval(0.0, 1.0, size=(4, 2), entropy=0)
    >>> ys = torchsde.sdeint(sde, y0, [0.0, 1.0], bm=bm, method="euler", dt=0.1,
    ...                      options={"compile": True})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vjp

from kutta.errors import InvalidArgumentError
from kutta.sde.base import LogqpSDE, RenamedSDE, batch_mvp
from kutta.solvers.compiled import GradMode, compile_function, grad_mode

COMPILE = "compile"  # the option's name in ``options`` / ``adjoint_options``


@dataclasses.dataclass(frozen=True)
class SDETarget:
    """The SDE object a compiled step traces, and how to count its evaluations.

    ``counter`` (``kutta.solve``'s evaluation count, or None) gains a step's drift and
    diffusion evaluations after each compiled step, as the eager step's counting wrapper would.
    """

    sde: Any
    diagonal: bool
    counter: Any = None

    def count(self, evaluations: int) -> None:
        if self.counter is not None:
            self.counter.calls += evaluations


def compile_target(view: Any) -> SDETarget | None:
    """What a compiled step of ``view`` (a :class:`~kutta.sde.base.SDEView`) traces, or None
    when the SDE is a per-solve wrapper (``names=...``, ``logqp=True``): the eager step then."""
    sde, counter = view.sde, None
    if isinstance(sde, (RenamedSDE, LogqpSDE)):
        return None
    inner = getattr(sde, "compile_target", None)  # kutta.solve's counting wrapper
    if inner is not None:
        sde, counter = inner
    return SDETarget(sde, view.diagonal, counter)


def check_compile_option(value: Any) -> bool:
    """The ``compile`` option's value, which must be a bool."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"options['compile'] must be True or False, got {value!r}")
    return value


_COMPILED: dict[tuple[Callable, GradMode], Callable] = {}


def _compiled(fn: Callable, mode: GradMode) -> Callable:
    """``torch.compile(fn)`` with a code object of its own per grad mode (see the module doc)."""
    key = (fn, mode)
    if key not in _COMPILED:
        _COMPILED[key] = compile_function(fn, f"{fn.__name__}_{mode.name}")
    return _COMPILED[key]


# The dispatch of kutta.sde.base.SDEView over the optional SDE methods, on the user's object
# (traced: dynamo resolves the hasattr checks once per SDE class and guards on them).


def _f_and_g(sde, t, y):
    if hasattr(sde, "f_and_g"):
        return sde.f_and_g(t, y)
    return sde.f(t, y), sde.g(t, y)


def _prod(sde, diagonal, g, v):
    if hasattr(sde, "prod"):
        return sde.prod(g, v)
    return g * v if diagonal else batch_mvp(g, v)


def _f_and_g_prod(sde, diagonal, t, y, v):
    if hasattr(sde, "f_and_g_prod"):
        return sde.f_and_g_prod(t, y, v)
    if hasattr(sde, "g_prod"):
        f = sde.f(t, y) if hasattr(sde, "f") else sde.f_and_g(t, y)[0]
        return f, sde.g_prod(t, y, v)
    f, g = _f_and_g(sde, t, y)
    return f, _prod(sde, diagonal, g, v)


def _euler_step(sde, diagonal, t, h, y, dw):
    f, g_dw = _f_and_g_prod(sde, diagonal, t, y, dw)
    return y + h * f + g_dw


def euler_step(target: SDETarget, t0: float, t1: float, y: torch.Tensor, dw: torch.Tensor):
    """One compiled Euler–Maruyama step from ``(t0, y)`` to ``t1`` with Brownian increment ``dw``
    (the eager :class:`~kutta.sde.methods.Euler` step's arithmetic, fused)."""
    t = torch.scalar_tensor(t0, dtype=y.dtype, device=y.device)
    h = torch.scalar_tensor(t1 - t0, dtype=y.dtype, device=y.device)
    y1 = _compiled(_euler_step, grad_mode(y))(target.sde, target.diagonal, t, h, y, dw)
    target.count(2)
    return y1


# Euler–Maruyama steps per compiled graph in a fixed-step solve. Each graph call has a fixed cost
# (guards, wrappers, output allocation) that a chunk pays once; compile time grows with the chunk
# (one unrolled step per step). bench_sde's compiled Euler solve: 16 steps a graph take 3-10% less
# CPU time than 8 (interleaved in one process), for about 50% more tracing and lowering time in
# the first solve (the C++ kernels are the same few either way).
EULER_CHUNK = 16


def _euler_steps(sde, diagonal, times, steps, y, increments):
    for k, dw in enumerate(increments):
        f, g_dw = _f_and_g_prod(sde, diagonal, times[k], y, dw)
        y = y + steps[k] * f + g_dw
    return y


def euler_steps(target: SDETarget, intervals: list, y: torch.Tensor, increments: list):
    """Consecutive compiled Euler–Maruyama steps over ``intervals`` (``(t0, t1)`` pairs) with
    their Brownian increments, unrolled in one graph: each step's arithmetic is
    :func:`euler_step`'s, with the same time and step-size values."""
    times = torch.tensor([t0 for t0, _ in intervals], dtype=y.dtype, device=y.device)
    steps = torch.tensor([t1 - t0 for t0, t1 in intervals], dtype=y.dtype, device=y.device)
    y1 = _compiled(_euler_steps, grad_mode(y))(
        target.sde, target.diagonal, times, steps, y, increments
    )
    target.count(2 * len(intervals))
    return y1


class _Fields(nn.Module):
    """The SDE's drift and/or diffusion as ``forward``, so that ``functional_call`` can evaluate
    them with the adjoint's parameters swapped in (parameter names get the prefix ``sde.``)."""

    def __init__(self, sde: nn.Module):
        super().__init__()
        self.sde = sde

    def forward(self, t, y, which: str):
        if which == "f":
            return self.sde.f(t, y) if hasattr(self.sde, "f") else self.sde.f_and_g(t, y)[0]
        if which == "g":
            return self.sde.g(t, y) if hasattr(self.sde, "g") else self.sde.f_and_g(t, y)[1]
        return _f_and_g(self.sde, t, y)


# One wrapper per SDE object, kept while the SDE lives: a new one per solve would recompile.
_FIELDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class AdjointTarget:
    """What the compiled adjoint step traces: the wrapped SDE and its adjoint parameters by name."""

    fields: _Fields
    names: tuple[str, ...]
    ito: bool
    diagonal: bool
    counter: Any = None


def adjoint_target(view: Any, params: tuple, continuous: bool = True) -> AdjointTarget | None:
    """The compiled adjoint step's target, or None when the step must stay eager (see the
    module doc for the conditions). ``continuous``: for the continuous adjoint, whose eager
    step treats additive noise and Itô SDEs apart; otherwise for reversible Heun's."""
    target = compile_target(view)
    if target is None or not isinstance(target.sde, nn.Module):
        return None
    sde = target.sde
    if any(hasattr(sde, name) for name in ("g_prod", "f_and_g_prod")):
        return None
    ito = view.sde_type == "ito"
    if continuous and (view.noise_type == "additive" or (ito and not target.diagonal)):
        return None
    if sde not in _FIELDS:
        _FIELDS[sde] = _Fields(sde)
    fields = _FIELDS[sde]
    name_of = {id(p): name for name, p in fields.named_parameters()}
    if any(id(p) not in name_of for p in params):
        return None
    names = tuple(name_of[id(p)] for p in params)
    return AdjointTarget(fields, names, ito, target.diagonal, target.counter)


def _adjoint_change(fields, ito, diagonal, params, t, h, y, v):
    """``h * drift + g v`` of the SDE at ``y`` with Stratonovich drift (for an Itô SDE with
    diagonal noise: ``f - ½ g ∂g/∂y``, as kutta.sde.base.SDEView.g_dg_prod computes it)."""
    if ito:
        f = functional_call(fields, params, (t, y, "f"))
        g, g_vjp = vjp(lambda state: functional_call(fields, params, (t, state, "g")), y)
        (correction,) = g_vjp(g)
        drift = torch.sub(f, correction, alpha=0.5)
    else:
        drift, g = functional_call(fields, params, (t, y, "fg"))
    return h * drift + _prod(fields.sde, diagonal, g, v)


def _adjoint_increment(fields, ito, diagonal, params, t, h, y, a, v, with_params):
    """The adjoint SDE's flat increment ``(-change, aᵀ ∂change/∂y, aᵀ ∂change/∂θ)``."""
    if with_params:
        change, change_vjp = vjp(
            lambda p, state: _adjoint_change(fields, ito, diagonal, p, t, h, state, v), params, y
        )
        grad_params, grad_y = change_vjp(a)
        pieces = [grad_params[name].reshape(-1) for name in params]
    else:
        change, change_vjp = vjp(
            lambda state: _adjoint_change(fields, ito, diagonal, params, t, h, state, v), y
        )
        (grad_y,) = change_vjp(a)
        pieces = [torch.zeros_like(p).reshape(-1) for p in params.values()]
    return torch.cat([-change.reshape(-1), grad_y.reshape(-1), *pieces])


def _adjoint_midpoint_step(fields, ito, diagonal, params, numel, shape, t0, t_mid, h, state, v):
    """The backward midpoint step on the adjoint SDE (kutta.sde.adjoint._AdjointMidpoint): a
    half step whose parameter part is left out (the adjoint field does not read it)."""

    def increment(t, state, with_params):
        y = state[:numel].view(shape)
        a = state[numel : 2 * numel].view(shape)
        return _adjoint_increment(fields, ito, diagonal, params, t, h, y, a, v, with_params)

    state_mid = torch.add(state, increment(t0, state, False), alpha=0.5)
    return state + increment(t_mid, state_mid, True)


def adjoint_midpoint_step(
    target: AdjointTarget,
    params: tuple,
    shape: torch.Size,
    s0: float,
    s1: float,
    state: torch.Tensor,
    v: torch.Tensor,
) -> torch.Tensor:
    """One compiled backward midpoint step of the adjoint SDE in reversed time ``s`` from
    ``s0`` to ``s1`` (the SDE's time is ``-s``), ``v`` the reversed Brownian increment."""
    h = s1 - s0
    like = state
    # The eager step evaluates the SDE at t = -(s) for s = s0 and s0 + h / 2 (rounded on the host).
    t0 = -torch.scalar_tensor(s0, dtype=like.dtype, device=like.device)
    t_mid = -torch.scalar_tensor(s0 + 0.5 * h, dtype=like.dtype, device=like.device)
    h_tensor = torch.scalar_tensor(h, dtype=like.dtype, device=like.device)
    named = dict(zip(target.names, params))
    step = _compiled(_adjoint_midpoint_step, grad_mode(state))
    out = step(
        target.fields,
        target.ito,
        target.diagonal,
        named,
        shape.numel(),
        shape,
        t0,
        t_mid,
        h_tensor,
        state,
        v,
    )
    if target.counter is not None:
        target.counter.calls += 4  # two increments, each one drift and one diffusion evaluation
    return out


def _reversible_heun_step(sde, diagonal, t1, h, half_h, y, z, f, g, dw):
    # kutta.sde.adjoint._ReversibleHeunAdjoint.forward's step, in its operation order
    z1 = (y + y) - z + h * f + _prod(sde, diagonal, g, dw)
    f1, g1 = _f_and_g(sde, t1, z1)
    y1 = torch.add(y + half_h * (f + f1), _prod(sde, diagonal, g + g1, dw), alpha=0.5)
    return y1, z1, f1, g1


def reversible_heun_step(target: SDETarget, t0: float, t1: float, y, z, f, g, dw):
    """One compiled reversible Heun step: ``(y1, z1, f1, g1)`` from ``(y, z, f, g)`` at ``t0``."""
    if z is y:  # the first step (z_0 = y_0): an aliased input would take a graph of its own
        z = y.clone()
    h = t1 - t0
    like = y
    t1_tensor = torch.scalar_tensor(t1, dtype=like.dtype, device=like.device)
    h_tensor = torch.scalar_tensor(h, dtype=like.dtype, device=like.device)
    half_h = torch.scalar_tensor(0.5 * h, dtype=like.dtype, device=like.device)
    step = _compiled(_reversible_heun_step, grad_mode(y))
    out = step(target.sde, target.diagonal, t1_tensor, h_tensor, half_h, y, z, f, g, dw)
    target.count(2)
    return out


def _prod_transpose(diagonal, cotangent, dw):
    return cotangent * dw if diagonal else cotangent.unsqueeze(-1) * dw.unsqueeze(-2)


def _reversible_heun_back(
    fields,
    diagonal,
    params,
    t0,
    h,
    half_h,
    half_h_before,
    y,
    z,
    f,
    g,
    adj_y,
    adj_z,
    adj_params,
    dw,
    dw_before,
    grad_out,
):
    """One step of kutta.sde.adjoint._ReversibleHeunAdjoint.backward, regrouped so that the
    vector-Jacobian product at the recovered z_n happens where f_n, g_n are evaluated: their
    cotangents are complete once the step's adjoint update and the next step's shares
    (``half_h_before``, ``dw_before``: the step before this one; zero for the first) are in."""
    sde = fields.sde
    z0 = (y + y) - z - h * f - _prod(sde, diagonal, g, dw)
    (f0, g0), fg_vjp = vjp(
        lambda p, state: functional_call(fields, p, (t0, state, "fg")), params, z0
    )
    y0 = y - half_h * (f0 + f) - 0.5 * _prod(sde, diagonal, g0 + g, dw)
    combined = torch.add(adj_z, adj_y, alpha=0.5)
    adj_y = torch.add(adj_y, adj_z, alpha=2) + grad_out
    adj_f = h * combined + half_h_before * adj_y
    adj_g = _prod_transpose(diagonal, combined, dw) + _prod_transpose(
        diagonal, 0.5 * adj_y, dw_before
    )
    grad_params, grad_z = fg_vjp((adj_f, adj_g))
    adj_params = [total + grad_params[name] for total, name in zip(adj_params, params)]
    return y0, z0, f0, g0, adj_y, grad_z - adj_z, adj_params


def reversible_heun_back(
    target: AdjointTarget,
    params: tuple,
    times: tuple[float, float, float | None],
    state: tuple,
    adjoints: tuple,
    dw: torch.Tensor,
    dw_before: torch.Tensor | None,
    grad_out: torch.Tensor | None,
):
    """One compiled backward step of the reversible Heun adjoint from step n + 1 to n.

    ``times`` is ``(t_n, t_{n+1}, t_{n-1} or None)``; ``state`` is ``(y, z, f, g)`` at n + 1;
    ``adjoints`` is ``(adj_y, adj_z, adj_params)`` after the parameter and z cotangents of
    ``f_{n+1}, g_{n+1}`` are in. Returns the same at n (the vector-Jacobian product at z_n
    done) as ``(state, adjoints)``.
    """
    t0, t1, t_before = times
    y, z, f, g = state
    adj_y, adj_z, adj_params = adjoints
    like = y
    h = t1 - t0
    h_before = 0.0 if t_before is None else t0 - t_before

    def scalar(value):
        return torch.scalar_tensor(value, dtype=like.dtype, device=like.device)

    named = dict(zip(target.names, params))
    step = _compiled(_reversible_heun_back, grad_mode(y))
    out = step(
        target.fields,
        target.diagonal,
        named,
        scalar(t0),
        scalar(h),
        scalar(0.5 * h),
        scalar(0.5 * h_before),
        y,
        z,
        f,
        g,
        adj_y,
        adj_z,
        list(adj_params),
        dw,
        torch.zeros_like(dw) if dw_before is None else dw_before,
        torch.zeros_like(y) if grad_out is None else grad_out,
    )
    if target.counter is not None:
        target.counter.calls += 2
    y0, z0, f0, g0, adj_y, adj_z, adj_params = out
    return (y0, z0, f0, g0), (adj_y, adj_z, adj_params)
