"""sdeint: torchsde's entry point, with the same signature, defaults and return values.

Example:
    >>> import kutta.sde as torchsde
    >>> ys = torchsde.sdeint(sde, y0, torch.linspace(0, 1, 5), method="euler", dt=1e-2)  # doctest: +SKIP
    >>> ys.shape  # (len(ts), batch, d)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from kutta.errors import InvalidArgumentError
from kutta.sde.base import LogqpSDE, RenamedSDE, SDEView
from kutta.sde.brownian import BrownianInterval
from kutta.sde.loop import integrate
from kutta.sde.methods import Method, select_method
from kutta.sde.settings import LEVY_AREA_APPROXIMATIONS, METHODS, NOISE_TYPES, SDE_TYPES


@dataclass
class Problem:
    """A validated solve: the SDE view, state, output times (floats) and the Brownian motion."""

    sde: Any
    y0: torch.Tensor
    ts: list[float]
    ts_tensor: torch.Tensor
    bm: Any
    method_cls: type[Method]
    noise_size: int


def _default_method(sde_type: str, noise_type: str) -> str:
    if sde_type == SDE_TYPES.stratonovich:
        return METHODS.midpoint
    return METHODS.euler if noise_type == NOISE_TYPES.general else METHODS.srk


def _check_times(ts, y0: torch.Tensor) -> tuple[list[float], torch.Tensor]:
    if torch.is_tensor(ts):
        if ts.dim() != 1:
            raise InvalidArgumentError(f"ts must be 1-dimensional, got shape {tuple(ts.shape)}")
        if ts.requires_grad:
            raise InvalidArgumentError("gradients with respect to ts are not supported; detach ts")
        ts_tensor = ts
    elif isinstance(ts, (list, tuple)) and all(isinstance(t, (int, float)) for t in ts):
        ts_tensor = torch.tensor(ts, dtype=y0.dtype, device=y0.device)
    else:
        raise InvalidArgumentError("ts must be a 1-d tensor or a list/tuple of floats")
    if ts_tensor.numel() < 1:
        raise InvalidArgumentError("ts must contain at least one time")
    times = [float(t) for t in ts_tensor.detach().cpu().tolist()]
    for a, b in zip(times, times[1:]):
        if not b > a:
            raise InvalidArgumentError(f"ts must be strictly increasing, got {a} followed by {b}")
    return times, ts_tensor


def _check_noise_shapes(view: SDEView, y0: torch.Tensor, t0: torch.Tensor, bm) -> int:
    """Call f and g once at (t0, y0) and check their shapes against the declared noise type."""
    batch, d = y0.shape
    if hasattr(view.sde, "g") or hasattr(view.sde, "f_and_g"):
        f, g = view.f_and_g(t0, y0)
    else:
        f, g = view.f(t0, y0), None
    if tuple(f.shape) != (batch, d):
        raise InvalidArgumentError(
            f"drift f(t, y) must have shape {(batch, d)} like y0, got {tuple(f.shape)}"
        )
    noise_type = view.noise_type
    if g is None:
        if bm is None:
            raise InvalidArgumentError(
                "cannot infer the number of Brownian channels: pass `bm`, or define `g` or `f_and_g`"
            )
        m = bm.shape[-1] if len(bm.shape) else 1
        v = torch.zeros(batch, m, dtype=y0.dtype, device=y0.device)
        gv = view.g_prod(t0, y0, v)
        if tuple(gv.shape) != (batch, d):
            raise InvalidArgumentError(
                f"g_prod(t, y, v) must have shape {(batch, d)}, got {tuple(gv.shape)}"
            )
        return m
    if noise_type == NOISE_TYPES.diagonal:
        if tuple(g.shape) != (batch, d):
            raise InvalidArgumentError(
                f"diffusion g(t, y) for diagonal noise must have shape (batch, d) = {(batch, d)}, "
                f"got {tuple(g.shape)}"
            )
        return d
    if g.dim() != 3 or tuple(g.shape[:2]) != (batch, d):
        raise InvalidArgumentError(
            f"diffusion g(t, y) for {noise_type} noise must have shape (batch, d, m) with "
            f"(batch, d) = {(batch, d)}, got {tuple(g.shape)}"
        )
    m = g.shape[2]
    if noise_type == NOISE_TYPES.scalar and m != 1:
        raise InvalidArgumentError(
            f"scalar noise needs g(t, y) of shape (batch, d, 1), got {tuple(g.shape)}"
        )
    return m


def prepare(sde, y0, ts, bm, method, dt, adaptive, names, logqp, bm_dt_hint=True) -> Problem:
    """Validate sdeint's arguments once; every later failure would be a deep shape error."""
    if names:
        sde = RenamedSDE(sde, names)
    for attr, valid in (("noise_type", NOISE_TYPES), ("sde_type", SDE_TYPES)):
        if not hasattr(sde, attr):
            raise InvalidArgumentError(
                f"the sde object has no attribute `{attr}` (one of {valid.all()})"
            )
        if getattr(sde, attr) not in valid:
            raise InvalidArgumentError(
                f"{attr} must be one of {valid.all()}, got {getattr(sde, attr)!r}"
            )
    if not any(hasattr(sde, name) for name in ("f", "f_and_g", "f_and_g_prod")):
        raise InvalidArgumentError("the sde must define `f` (or `f_and_g` / `f_and_g_prod`)")
    if not any(hasattr(sde, name) for name in ("g", "f_and_g", "g_prod", "f_and_g_prod")):
        raise InvalidArgumentError(
            "the sde must define `g` (or `f_and_g`, `g_prod`, `f_and_g_prod`)"
        )
    if not torch.is_tensor(y0) or y0.dim() != 2:
        shape = tuple(y0.shape) if torch.is_tensor(y0) else type(y0).__name__
        raise InvalidArgumentError(f"y0 must be a tensor of shape (batch, d), got {shape}")
    if not y0.is_floating_point():
        raise InvalidArgumentError(f"y0 must be floating point, got {y0.dtype}")
    dt = float(dt)
    if not dt > 0:
        raise InvalidArgumentError(f"dt must be > 0, got {dt}")
    times, ts_tensor = _check_times(ts, y0)
    view = SDEView(sde)
    t0 = ts_tensor[0].to(y0.dtype)
    noise_size = _check_noise_shapes(view, y0, t0, bm)
    if logqp:
        view = SDEView(LogqpSDE(view))
        y0 = torch.cat([y0, y0.new_zeros(y0.shape[0], 1)], dim=1)
        if view.noise_type == NOISE_TYPES.diagonal:
            noise_size += 1  # diagonal noise has one channel per state, the log-ratio's included
    name = method if method is not None else _default_method(view.sde_type, view.noise_type)
    method_cls = select_method(name, view.sde_type, view.noise_type)
    if bm is None:
        if LEVY_AREA_APPROXIMATIONS.none in method_cls.levy_area_approximations:
            levy = LEVY_AREA_APPROXIMATIONS.none
        elif LEVY_AREA_APPROXIMATIONS.space_time in method_cls.levy_area_approximations:
            levy = LEVY_AREA_APPROXIMATIONS.space_time
        else:
            levy = LEVY_AREA_APPROXIMATIONS.foster
        span = (times[0], times[-1]) if len(times) > 1 else (times[0], times[0] + dt)
        bm = BrownianInterval(
            t0=span[0],
            t1=span[1],
            size=(y0.shape[0], noise_size),
            dtype=y0.dtype,
            device=y0.device,
            levy_area_approximation=levy,
            dt=None if (adaptive or not bm_dt_hint) else dt,
        )
    else:
        _check_bm(bm, y0, noise_size, times, method_cls, view.noise_type)
    return Problem(view, y0, times, ts_tensor, bm, method_cls, noise_size)


def _check_bm(bm, y0, noise_size, times, method_cls, noise_type) -> None:
    shape = tuple(bm.shape)
    if len(shape) != 2 or shape != (y0.shape[0], noise_size):
        raise InvalidArgumentError(
            f"bm must have shape (batch, noise channels) = {(y0.shape[0], noise_size)}, got {shape}"
        )
    levy = bm.levy_area_approximation
    if levy not in method_cls.levy_area_approximations:
        raise InvalidArgumentError(
            f"method {method_cls.name!r} needs a Brownian motion with levy_area_approximation in "
            f"{list(method_cls.levy_area_approximations)}, this one has {levy!r}"
        )
    start, end = getattr(bm, "t0", None), getattr(bm, "t1", None)
    if start is not None and end is not None:
        slack = 1e-9 * max(1.0, abs(start), abs(end))
        if times[0] < start - slack or times[-1] > end + slack:
            raise InvalidArgumentError(
                f"ts spans [{times[0]}, {times[-1]}], outside the Brownian motion's span [{start}, {end}]"
            )


def split_return(ys: torch.Tensor, extra_state, extra: bool, logqp: bool):
    """torchsde's return convention: ys, then log-ratio increments (logqp), then extra state."""
    if logqp:
        ys, log_ratio = ys[..., :-1], ys[..., -1]
        increments = log_ratio[1:] - log_ratio[:-1]
        return (ys, increments, extra_state) if extra else (ys, increments)
    return (ys, extra_state) if extra else ys


def sdeint(
    sde,
    y0: torch.Tensor,
    ts,
    bm=None,
    method: str | None = None,
    dt: float = 1e-3,
    adaptive: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-4,
    dt_min: float = 1e-5,
    options: dict | None = None,
    names: dict[str, str] | None = None,
    logqp: bool = False,
    extra: bool = False,
    extra_solver_state: tuple | None = None,
    **unused_kwargs: Any,
):
    """Solve an SDE and return its states at ``ts``, shape (len(ts), batch, d).

    Arguments and return values follow torchsde.sdeint: ``method`` defaults to 'srk' for Itô
    diagonal/additive/scalar noise, 'euler' for Itô general noise and 'midpoint' for
    Stratonovich; ``bm`` defaults to a BrownianInterval over ts's span; ``logqp`` also returns
    the increments of the log-ratio ∫ ½|u|² dt; ``extra`` also returns the solver's extra state.
    ``options={"compile": True}`` (methods 'euler' and 'reversible_heun') makes each fixed step
    one ``torch.compile``-d graph: the same path to round-off, faster once compiled (see
    :mod:`kutta.sde.compiled`).

    Example:
        >>> ys = sdeint(sde, y0, [0.0, 1.0], method="euler", dt=0.01)  # doctest: +SKIP
    """
    if unused_kwargs:
        raise InvalidArgumentError(
            f"sdeint got unexpected keyword arguments {sorted(unused_kwargs)}"
        )
    problem = prepare(sde, y0, ts, bm, method, dt, adaptive, names, logqp)
    stepper = problem.method_cls(problem.sde, problem.bm, dict(options or {}))
    if extra_solver_state is None:
        extra_solver_state = stepper.init(problem.ts[0], problem.y0)
    ys, extra_state = integrate(
        stepper, problem.y0, problem.ts, extra_solver_state, float(dt), adaptive, rtol, atol, dt_min
    )
    return split_return(ys, extra_state, extra, logqp)
