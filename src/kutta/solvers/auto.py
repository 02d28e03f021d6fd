"""``method="auto"``: explicit while the problem is non-stiff, implicit while it is stiff.

Stiffness shows as a step size limited by the explicit method's stability region rather than
by accuracy. Hairer's test (Hairer & Wanner II, IV.2) reads it off stages the explicit step
computed anyway: the last two stages of an FSAL pair are both evaluated at ``t + h``, so
``rho = |k_s - k_{s-1}| / |Y_s - Y_{s-1}|`` estimates the dominant eigenvalue magnitude of the
Jacobian at no cost. When ``h * rho`` sits on the stability boundary for ``stiff_steps``
accepted steps in a row, the method switches to the implicit one. While implicit, a few
Jacobian–vector products every ``check_every`` steps estimate ``rho`` by power iteration; when
the implicit method's step would be comfortably stable for the explicit one, it switches back.

Both default methods are 5(4) pairs, so one controller serves both.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from .base import Method, StepResult
from .explicit import ExplicitRK


class AutoState(NamedTuple):
    implicit: bool
    inner: Any  # the active method's state
    stiff_count: int  # consecutive accepted explicit steps that looked stiff
    since_check: int  # implicit steps since the last spectral-radius check


def _power_iteration_radius(f, t, y: torch.Tensor, iterations: int = 4) -> float:
    """|dominant eigenvalue| of df/dy at (t, y), by power iteration on difference quotients.

    Finite differences rather than forward-mode AD: any vector field works, and a rough
    estimate is all a switching decision needs.
    """
    with torch.no_grad():
        f0 = f(t, y)
        v = torch.randn_like(y)
        v = v / v.norm().clamp_min(1e-300)
        eps = torch.finfo(y.dtype).eps ** 0.5 * (1.0 + float(y.norm()))
        radius = 0.0
        for _ in range(iterations):
            jv = (f(t, y + eps * v) - f0) / eps
            radius = float(jv.norm())
            if radius == 0.0 or not torch.isfinite(jv).all():
                break
            v = jv / radius
    return radius


@dataclasses.dataclass(eq=False)
class AutoSwitch(Method):
    """Automatic stiffness switching between an explicit and an implicit method.

    Args:
        explicit: the non-stiff method; an FSAL ``ExplicitRK`` whose last two nodes are 1
            (default ``tsit5``).
        implicit: the stiff method (default ``rodas5``).
        stability_limit: ``h * rho`` beyond which an explicit step counts as stability-limited
            (the real stability boundary of tsit5 and dopri5 is about 3.3–3.5).
        stiff_steps: stability-limited steps in a row before switching to the implicit method.
        check_every: implicit steps between spectral-radius checks.
        return_limit: switch back when ``h * rho`` is below this for the explicit method.
        compile: build the default methods with ``compile=True`` (each step one
            ``torch.compile``-d graph in shared mode without gradients; see
            :class:`~kutta.solvers.explicit.ExplicitRK` and the Rosenbrock step).

    ``stats`` (copied into ``Solution.stats``) records the steps taken by each method and the
    number of switches. Shared batch mode only.

    Example:
        >>> import torch, kutta
        >>> rober = lambda t, y: torch.stack([-0.04 * y[0] + 1e4 * y[1] * y[2],
        ...     0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2, 3e7 * y[1] ** 2])
        >>> sol = kutta.solve(rober, torch.tensor([1.0, 0, 0], dtype=torch.float64),
        ...                   span=(0.0, 1e3), method="auto")
        >>> sol.stats["steps_by_method"]["rodas5"] > 0
        True
    """

    explicit: Method | None = None
    implicit: Method | None = None
    stability_limit: float = 3.0
    stiff_steps: int = 15
    check_every: int = 10
    return_limit: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        from .implicit import IMPLICIT_METHODS
        from .tableaus import TSIT5

        if self.explicit is None:
            self.explicit = ExplicitRK(TSIT5, compile=self.compile)
        if self.implicit is None:
            self.implicit = IMPLICIT_METHODS["rodas5"](compile=self.compile)
        if not (isinstance(self.explicit, ExplicitRK) and self.explicit.tableau.fsal):
            raise ValueError("auto switching needs an FSAL explicit Runge–Kutta method")
        tab = self.explicit.tableau
        if tab.c[-2] != 1.0:
            raise ValueError(f"{tab.name}: stiffness detection needs its last two nodes at 1")
        self.name = "auto"
        self.order = min(self.explicit.order, self.implicit.order)
        self.error_order = min(self.explicit.error_order, self.implicit.error_order)
        # Y_s - Y_{s-1} = h * sum_j (b_j - a_{s-1, j}) k_j
        a_prev = list(tab.a[-2]) + [0.0, 0.0]
        self._detect_weights = [b - a for b, a in zip(tab.b, a_prev[: tab.stages])]
        self.stats: dict[str, Any] = {}

    def bind(self, dtype: torch.dtype, device: torch.device) -> AutoSwitch:
        bound = dataclasses.replace(
            self,
            explicit=self.explicit.bind(dtype, device),
            implicit=self.implicit.bind(dtype, device),
        )
        bound._weights = torch.tensor(self._detect_weights, dtype=dtype, device=device)
        bound.stats = {
            "steps_by_method": {self.explicit.name: 0, self.implicit.name: 0},
            "switches": 0,
        }
        self.stats = bound.stats
        bound._last_mode = False
        return bound

    def set_error_scale(self, atol: Any, rtol: Any) -> None:
        self.explicit.set_error_scale(atol, rtol)
        self.implicit.set_error_scale(atol, rtol)

    def set_error_norm(self, rtol, atol, norm) -> None:
        self.explicit.set_error_norm(rtol, atol, norm)
        self.implicit.set_error_norm(rtol, atol, norm)

    def init(self, f, t0, y0):
        self.implicit.init(f, t0, y0)  # lets it set itself up for this state's layout
        return AutoState(False, self.explicit.init(f, t0, y0), 0, 0)

    def reset_after_discontinuity(self, state: AutoState) -> AutoState:
        return state._replace(inner=None)

    def step(self, f, t, y, h, state: AutoState) -> StepResult:
        if not isinstance(h, float):
            raise ValueError("method='auto' supports the shared batch mode only")
        if state.implicit != self._last_mode:
            self.stats["switches"] += 1
            self._last_mode = state.implicit
        if state.implicit:
            return self._implicit_step(f, t, y, h, state)
        res = self.explicit.step(f, t, y, h, state.inner)
        self.stats["steps_by_method"][self.explicit.name] += 1
        stages = res.dense.stages  # (s, n)
        dk = (stages[-1] - stages[-2]).norm()
        dy = torch.mv(stages.t(), self._weights).norm() * abs(h)
        h_rho = abs(h) * float(dk / dy.clamp_min(1e-300))
        count = state.stiff_count + 1 if h_rho > self.stability_limit else 0
        if count >= self.stiff_steps:
            new_state = AutoState(True, None, 0, 0)
        else:
            new_state = AutoState(False, res.state, count, 0)
        return StepResult(
            res.y, res.error, (False, res.dense), new_state, error_norm=res.error_norm
        )

    def _implicit_step(self, f, t, y, h, state: AutoState) -> StepResult:
        res = self.implicit.step(f, t, y, h, state.inner)
        self.stats["steps_by_method"][self.implicit.name] += 1
        since = state.since_check + 1
        switch_back = False
        if since >= self.check_every:
            since = 0
            rho = _power_iteration_radius(f, t + h, res.y)
            switch_back = abs(h) * rho < self.return_limit
        inner = res.state if isinstance(res.state, torch.Tensor) else None
        new_state = AutoState(not switch_back, inner if not switch_back else None, 0, since)
        return StepResult(res.y, res.error, (True, res.dense), new_state, error_norm=res.error_norm)

    def interpolate(self, dense, theta):
        implicit, inner = dense
        return (self.implicit if implicit else self.explicit).interpolate(inner, theta)

    def interpolate_many(self, dense, thetas):
        implicit, inner = dense
        return (self.implicit if implicit else self.explicit).interpolate_many(inner, thetas)
