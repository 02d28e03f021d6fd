"""``method="scipy_solver"``: scipy's ``solve_ivp`` behind the odeint interface (forward only)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .._inputs import check_state, check_times
from ..errors import InvalidArgumentError, SolverError, UnknownNameError

_SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")
_OPTIONS = ("solver", "min_step", "max_step", "first_step")


def scipy_odeint(func, y0, t, *, rtol: Any, atol: Any, options: dict[str, Any]) -> torch.Tensor:
    """Solve with ``scipy.integrate.solve_ivp``; no gradients flow through it (as torchdiffeq).

    Example:
        >>> import torch
        >>> from kutta import odeint
        >>> y = odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 1.0]),
        ...            method="scipy_solver", options={"solver": "LSODA"})
        >>> round(float(y[-1]), 5)
        0.36788
    """
    from scipy.integrate import solve_ivp

    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise UnknownNameError("scipy_solver option", unknown[0], _OPTIONS)
    solver = options.get("solver", "LSODA")
    if solver not in _SOLVERS:
        raise UnknownNameError("scipy solver", solver, _SOLVERS)
    if isinstance(y0, (tuple, list)):
        raise InvalidArgumentError("scipy_solver supports a single tensor state, not a tuple")
    check_state(y0)
    t = check_times(t, min_len=1)
    shape, dtype, device = y0.shape, y0.dtype, y0.device
    if t.numel() == 1:
        return y0.detach()[None].clone()

    def np_func(tt, y):
        with torch.no_grad():
            yt = torch.as_tensor(y, dtype=dtype, device=device).reshape(shape)
            out = func(torch.tensor(tt, dtype=t.dtype, device=device), yt)
        return out.detach().cpu().numpy().reshape(-1).astype(np.float64)

    tn = t.detach().cpu().numpy().astype(np.float64)
    kwargs = {k: options[k] for k in ("min_step", "max_step", "first_step") if k in options}
    if solver not in ("LSODA",):
        kwargs.pop("min_step", None)
    sol = solve_ivp(
        np_func,
        (tn[0], tn[-1]),
        y0.detach().cpu().numpy().reshape(-1).astype(np.float64),
        t_eval=tn,
        method=solver,
        rtol=_as_np(rtol),
        atol=_as_np(atol),
        **kwargs,
    )
    if not sol.success:
        raise SolverError(
            f"scipy's {solver} failed: {sol.message}", t=float(sol.t[-1]) if len(sol.t) else None
        )
    return torch.as_tensor(sol.y.T, dtype=dtype, device=device).reshape(-1, *shape)


def _as_np(tol):
    return tol.detach().cpu().numpy().reshape(-1) if torch.is_tensor(tol) else tol
