"""How the models call the engine.

Every model takes the same solver settings (method, tolerances, options, gradient mode) and
goes through :func:`integrate`, so switching a model to the adjoint is one argument.

Irregular time series need every series solved over its own time span. :func:`evolve` does it
with one batched solve: it maps each series' span ``[t_from_b, t_to_b]`` onto the shared span
``s in [0, 1]`` (``dz/ds = (t_to - t_from) f(t_from + s (t_to - t_from), z)``), so a padded
position (``t_to == t_from``) does not move the state at all.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError

GRADIENT_MODES = ("backprop", "adjoint")
BATCH_MODES = ("shared", "per_sample")
# torchdiffeq-style options that per-sample solves understand, and their kutta.solve names.
_PER_SAMPLE_OPTIONS = {"step_size": "step_size", "first_step": "dt0", "max_num_steps": "max_steps"}


@dataclass(frozen=True)
class SolverOptions:
    """Solver settings shared by every model.

    Args:
        method: a solver name understood by :func:`kutta.odeint` (e.g. ``"dopri5"``,
            ``"rk4"``, ``"euler"``); None means ``"dopri5"``, torchdiffeq's default.
        rtol, atol: tolerances of adaptive methods.
        options: extra solver options passed through (e.g. ``{"step_size": 0.1}``).
        gradient: ``"backprop"`` (differentiate through the solver's operations) or
            ``"adjoint"`` (solve the adjoint equation backwards; memory independent of steps).
        batch_mode: for per-series time spans (ODE-RNN, Latent ODE, Neural CDE):
            ``"shared"`` maps every series' span onto [0, 1] and solves the batch with one step
            size; ``"per_sample"`` gives each series its own steps in its own times
            (:func:`kutta.solve`), so adaptive results do not depend on the batch at all.
            Per-sample fixed-step methods need ``options={"step_size": ...}`` (in time units).

    Example:
        >>> SolverOptions(method="rk4", options={"step_size": 0.1}).gradient
        'backprop'
    """

    method: str | None = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-4
    options: Mapping[str, Any] | None = field(default=None)
    gradient: str = "backprop"
    batch_mode: str = "shared"

    def __post_init__(self) -> None:
        if self.gradient not in GRADIENT_MODES:
            raise UnknownNameError("gradient mode", self.gradient, GRADIENT_MODES)
        if self.batch_mode not in BATCH_MODES:
            raise UnknownNameError("batch mode", self.batch_mode, BATCH_MODES)
        if self.batch_mode == "per_sample":
            if self.gradient == "adjoint":
                raise InvalidArgumentError(
                    "batch_mode='per_sample' supports gradient='backprop' only (for now)"
                )
            unknown = set(self.options or {}) - set(_PER_SAMPLE_OPTIONS)
            if unknown:
                raise InvalidArgumentError(
                    f"options {sorted(unknown)} are not supported with batch_mode='per_sample'; "
                    f"supported: {sorted(_PER_SAMPLE_OPTIONS)}"
                )
        if not (self.rtol > 0 and self.atol > 0):
            raise InvalidArgumentError(
                f"rtol and atol must be positive, got rtol={self.rtol}, atol={self.atol}"
            )


def make_solver_options(
    method: str | None,
    rtol: float,
    atol: float,
    options: Mapping[str, Any] | None,
    gradient: str,
    batch_mode: str = "shared",
) -> SolverOptions:
    """Build :class:`SolverOptions` from a model's keyword arguments (validates them once)."""
    return SolverOptions(
        method=method,
        rtol=rtol,
        atol=atol,
        options=None if options is None else dict(options),
        gradient=gradient,
        batch_mode=batch_mode,
    )


@functools.cache
def _lands_on_step_t(method: str | None) -> bool:
    """Whether ``method`` takes the ``step_t`` option (adaptive methods do; None is dopri5)."""
    from kutta.solvers.registry import make_method, valid_options

    name = "dopri5" if method is None else method
    try:
        return "step_t" in valid_options(name, make_method(name, {}))
    except UnknownNameError:
        return False


def integrate(
    func: nn.Module,
    y0: torch.Tensor,
    t: torch.Tensor,
    solver: SolverOptions,
    step_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """``odeint(func, y0, t)`` with the model's solver settings; returns ``(len(t), *y0.shape)``.

    ``step_t``: times an adaptive method must step on exactly (where the field is not smooth);
    ignored by fixed-step methods, which step on the output times anyway.
    """
    options = dict(solver.options or {})
    if step_t is not None and _lands_on_step_t(solver.method):
        given = options.get("step_t")
        if given is not None:
            step_t = torch.cat([torch.as_tensor(given).to(step_t), step_t]).unique()
        options["step_t"] = step_t
    kwargs = dict(
        rtol=solver.rtol,
        atol=solver.atol,
        method=solver.method or "dopri5",
        options=options or None,
    )
    if solver.gradient == "adjoint":
        # Imported here: the adjoint is an optional, later part of the engine.
        try:
            from kutta import odeint_adjoint
        except ImportError as exc:
            raise InvalidArgumentError(
                "gradient='adjoint' needs kutta.odeint_adjoint, which this kutta build lacks"
            ) from exc
        return odeint_adjoint(func, y0, t, **kwargs)
    from kutta import odeint

    return odeint(func, y0, t, **kwargs)


def _per_row(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a (B,) tensor to broadcast against ``like`` of shape (B, ...)."""
    return x.reshape(x.shape[0], *([1] * (like.dim() - 1)))


class _RescaledField(nn.Module):
    """``dz/ds = dt f(t_from + s dt, z)`` for ``s in [0, 1]``; ``func`` sees per-series times (B,)."""

    def __init__(self, func: nn.Module, t_from: torch.Tensor, dt: torch.Tensor):
        super().__init__()
        self.func = func
        self.t_from = t_from
        self.dt = dt

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return _per_row(self.dt, z) * self.func(self.t_from + s * self.dt, z)


_UNIT_SPAN = (0.0, 1.0)


def evolve(
    func: nn.Module,
    z: torch.Tensor,
    t_from: torch.Tensor,
    t_to: torch.Tensor,
    solver: SolverOptions,
) -> torch.Tensor:
    """Solve ``dz/dt = func(t, z)`` for each series from ``t_from[b]`` to ``t_to[b]``.

    ``z`` is (B, ...) and ``t_from``, ``t_to`` are (B,); ``func`` receives ``t`` of shape (B,).
    Spans may be empty (the state is returned unchanged) or run backwards in time.
    """
    if solver.batch_mode == "per_sample":
        return _solve_per_sample(func, z, torch.stack([t_from, t_to], dim=1), solver)[:, -1]
    dt = t_to - t_from
    span = torch.tensor(_UNIT_SPAN, dtype=z.dtype, device=z.device)
    return integrate(_RescaledField(func, t_from, dt), z, span, solver)[-1]


class _SharedTimeField(nn.Module):
    """Presents a scalar solver time to ``func`` as per-series times (B,), like :func:`evolve`."""

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.func(t.expand(z.shape[0]), z)


def evolve_through(
    func: nn.Module,
    z0: torch.Tensor,
    t0: torch.Tensor,
    times: torch.Tensor,
    solver: SolverOptions,
    land: bool = False,
) -> torch.Tensor:
    """States at each of ``times`` (B, Q) starting from ``z0`` (B, N) at ``t0`` (B,): (B, Q, N).

    ``land``: make adaptive methods step on every one of ``times`` (for a field that is not
    smooth there) rather than interpolate to them.

    Shared mode: when every series shares ``t0`` and strictly increasing ``times`` (a common
    grid), this is one solve over the grid; otherwise the series are advanced together one span
    at a time. Per-sample mode: one solve per group of series with the same number of distinct
    times (padding repeats the last time), so a series' steps never depend on the others.
    """
    if solver.batch_mode == "per_sample":
        # A first query at t0 itself is the start, not a step: keep the grid strictly monotone.
        starts_at_t0 = bool((times[:, 0] == t0).all())
        grid = times if starts_at_t0 else torch.cat([t0.unsqueeze(1), times], dim=1)
        grouped = _per_sample_by_length(func, z0, grid, solver)
        if grouped is not None:
            return grouped if starts_at_t0 else grouped[:, 1:]
    elif _is_shared_grid(t0, times):
        # The first query may be t0 itself (then the solve's first output is z0).
        starts_at_t0 = bool(times[0, 0] == t0[0])
        grid = times[0] if starts_at_t0 else torch.cat([t0[:1], times[0]])
        if grid.numel() > 1 and bool((grid[1:] > grid[:-1]).all()):
            landing = grid if land else None
            solution = integrate(_SharedTimeField(func), z0, grid, solver, step_t=landing)
            return (solution if starts_at_t0 else solution[1:]).transpose(0, 1)
    states = []
    z, t_prev = z0, t0
    for q in range(times.shape[1]):
        z = evolve(func, z, t_prev, times[:, q], solver)
        states.append(z)
        t_prev = times[:, q]
    return torch.stack(states, dim=1)


def _is_shared_grid(t0: torch.Tensor, times: torch.Tensor) -> bool:
    return bool((t0 == t0[0]).all()) and bool((times == times[:1]).all())


class _RowTagged(nn.Module):
    """Carries each row's batch index as a last, constant state column.

    The per-sample loop drops finished rows, so a field that needs per-series data (a control
    path, say) must be told which rows it is given: ``func(t, z, rows)``.
    """

    def __init__(self, func: nn.Module):
        super().__init__()
        self.func = func

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        rows = state[:, -1].long()
        dz = self.func(t, state[:, :-1], rows)
        return torch.cat([dz, torch.zeros_like(state[:, -1:])], dim=-1)


def _rms_without_tag(scaled_error: torch.Tensor) -> torch.Tensor:
    return scaled_error[:, :-1].pow(2).mean(dim=-1).sqrt()


def _per_sample_by_length(
    func: nn.Module, z0: torch.Tensor, grid: torch.Tensor, solver: SolverOptions
) -> torch.Tensor | None:
    """Per-sample solves over grids that are strictly monotone and then repeat their last time,
    one solve per distinct length; None if some grid is not of that form."""
    steps = grid[:, 1:] - grid[:, :-1]
    direction = -1.0 if bool((steps < 0).any()) else 1.0
    monotone = (steps * direction > 0).long().cumprod(dim=1)
    lengths = monotone.sum(dim=1) + 1
    padding = grid == grid.gather(1, (lengths - 1).unsqueeze(1))
    columns = torch.arange(grid.shape[1], device=grid.device)
    if not bool((padding | (columns[None, :] < lengths[:, None])).all()):
        return None
    states = z0.unsqueeze(1).expand(-1, grid.shape[1], -1)
    for length in torch.unique(lengths).tolist():
        if length == 1:
            continue
        rows = (lengths == length).nonzero().flatten()
        solved = _solve_per_sample(func, z0[rows], grid[rows, :length], solver, rows)
        padded = torch.cat([solved, solved[:, -1:].expand(-1, grid.shape[1] - length, -1)], dim=1)
        states = states.index_put((rows,), padded)
    return states


def _solve_per_sample(
    func: nn.Module,
    z: torch.Tensor,
    grid: torch.Tensor,
    solver: SolverOptions,
    row_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each row of ``z`` (B, N) solved over its own monotone ``grid`` row (B, G): (B, G, N).

    Only rows whose span is not empty are solved (the loop needs strictly monotone times); the
    others keep their state. ``func(t, z)`` sees only some rows; if ``func.needs_rows`` is true
    it is called as ``func(t, z, rows)`` with the rows' batch indices (``row_ids`` maps the
    rows of ``z`` to those indices when ``z`` is part of a larger batch).
    """
    import kutta

    if z.dim() != 2:
        raise InvalidArgumentError(
            f"batch_mode='per_sample' needs a (batch, features) state, got {tuple(z.shape)}"
        )
    steps = grid[:, 1:] - grid[:, :-1]
    if bool((steps > 0).any()) and bool((steps < 0).any()):
        raise InvalidArgumentError(
            "batch_mode='per_sample' needs every series' times to run in the same direction"
        )
    moving = steps.ne(0).any(dim=1).nonzero().flatten()
    states = z.unsqueeze(1).expand(-1, grid.shape[1], -1)
    if moving.numel() == 0:
        return states
    start = z[moving]
    controller = {}
    if getattr(func, "needs_rows", False):
        func = _RowTagged(func)
        ids = moving if row_ids is None else row_ids[moving]
        start = torch.cat([start, ids.to(z.dtype).unsqueeze(1)], dim=1)
        controller["norm"] = _rms_without_tag
    extra = {_PER_SAMPLE_OPTIONS[k]: v for k, v in (solver.options or {}).items()}
    solution = kutta.solve(
        func,
        start,
        t_eval=grid[moving],
        method=solver.method,
        controller=kutta.PIController(rtol=solver.rtol, atol=solver.atol, **controller),
        batch_mode="per_sample",
        **extra,
    )
    solved = solution.ys.transpose(0, 1)[..., : z.shape[1]]
    return states.index_put((moving,), solved)
