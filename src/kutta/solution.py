"""The result of a solve: outputs, statistics, status codes and (optionally) dense output."""

from __future__ import annotations

import bisect
import dataclasses
from typing import Any

import torch

from .errors import InvalidArgumentError
from .status import Status


@dataclasses.dataclass
class DenseSteps:
    """The accepted steps of a shared-mode solve, kept for ``Solution.evaluate``.

    ``starts[i]`` and ``sizes[i]`` are host floats in the solver's (forward) time; ``pieces[i]``
    is what ``method.interpolate`` needs for step ``i``.
    """

    method: Any
    starts: list[float] = dataclasses.field(default_factory=list)
    sizes: list[float] = dataclasses.field(default_factory=list)
    pieces: list[Any] = dataclasses.field(default_factory=list)

    def append(self, t0: float, h: float, piece: Any) -> None:
        self.starts.append(t0)
        self.sizes.append(h)
        self.pieces.append(piece)

    def __call__(self, t: float) -> torch.Tensor:
        i, theta = self._locate(t)
        return self.method.interpolate(self.pieces[i], theta)

    def many(self, ts: list[float]) -> torch.Tensor:
        """The states at several times, stacked; the times that share a step cost one call."""
        located = [self._locate(t) for t in ts]
        by_step: dict[int, list[int]] = {}
        for position, (i, _) in enumerate(located):
            by_step.setdefault(i, []).append(position)
        out: list[Any] = [None] * len(ts)
        for i, positions in by_step.items():
            values = self.method.interpolate_many(
                self.pieces[i], [located[p][1] for p in positions]
            )
            for p, value in zip(positions, values.unbind(0)):
                out[p] = value
        return torch.stack(out)

    def _locate(self, t: float) -> tuple[int, float]:
        """The step holding ``t`` and ``t``'s relative position in it."""
        if not self.starts:
            raise InvalidArgumentError("the solve took no steps; there is nothing to interpolate")
        lo, hi = self.starts[0], self.starts[-1] + self.sizes[-1]
        if not (lo - 1e-12 * abs(lo) <= t <= hi + 1e-12 * abs(hi)):
            raise InvalidArgumentError(f"t = {t} is outside the solved interval [{lo}, {hi}]")
        i = min(max(bisect.bisect_right(self.starts, t) - 1, 0), len(self.starts) - 1)
        theta = (t - self.starts[i]) / self.sizes[i]
        return i, min(max(theta, 0.0), 1.0)


def loop_stats(result: Any, method: Any) -> dict[str, Any]:
    """``Solution.stats`` from a loop result (shared: ints, per sample: ``(B,)`` tensors).

    Methods that count more (Jacobians, LU factorizations, switches) expose a ``stats`` dict.
    """
    return {
        "nfe": result.nfe,
        "n_steps": result.n_accepted + result.n_rejected,
        "n_accepted": result.n_accepted,
        "n_rejected": result.n_rejected,
        "method": method.name,
        **getattr(method, "stats", {}),
    }


@dataclasses.dataclass
class Solution:
    """What ``kutta.solve`` returns.

    Attributes:
        ts: the output times, ``(T,)`` (or ``(B, T)`` for per-sample output times).
        ys: the states at ``ts``, time first: ``(T, *y0.shape)`` (a tuple for tuple states).
        stats: counts: ``nfe``, ``n_steps``, ``n_accepted``, ``n_rejected`` (ints, or ``(B,)``
            tensors in per-sample mode), and ``method``.
        status: ``Status`` codes, a 0-dim tensor (shared) or ``(B,)`` (per sample).
        events: for each event function, the times (and states) at which it fired.

    Example:
        >>> import torch, kutta
        >>> sol = kutta.solve(lambda t, y: -y, torch.ones(2), t_eval=torch.linspace(0, 1, 3))
        >>> sol.ys.shape, bool(sol.success)
        (torch.Size([3, 2]), True)
    """

    ts: torch.Tensor
    ys: Any
    stats: dict[str, Any]
    status: torch.Tensor
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    _dense: Any = dataclasses.field(default=None, repr=False)
    _to_user: Any = dataclasses.field(default=None, repr=False)

    @property
    def success(self) -> torch.Tensor:
        """True where a sample finished without failure (an event stop counts as success)."""
        return (self.status == Status.SUCCESS) | (self.status == Status.EVENT)

    def evaluate(self, t: Any) -> Any:
        """The dense solution at time(s) ``t``; differentiable. Needs ``solve(..., dense=True)``.

        ``t`` is a float, a 0-dim tensor or a 1-D tensor (result stacked along a new first dim).
        """
        if self._dense is None:
            raise InvalidArgumentError(
                "dense output was not kept; call kutta.solve(..., dense=True)"
            )
        to_forward, from_flat = self._to_user
        times = torch.as_tensor(t, dtype=torch.float64).reshape(-1).tolist()
        values = self._dense.many([to_forward(float(s)) for s in times])
        out = from_flat(values)
        if isinstance(t, (float, int)) or (torch.is_tensor(t) and t.dim() == 0):
            return tuple(v[0] for v in out) if isinstance(out, tuple) else out[0]
        return out
