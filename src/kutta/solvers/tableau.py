"""Butcher tableaus: immutable, validated data describing an explicit Runge–Kutta method.

A tableau is plain numbers. Everything a step needs is derived from it once and cast to
the solve's dtype and device once (:meth:`ButcherTableau.to`), never inside the step.

Conventions (``s`` stages, stage ``i`` evaluated at ``t + c[i] h``)::

    k_i   = f(t + c_i h, y + h * sum_j a[i][j] k_j)          (j < i)
    y_new = y + h * sum_i b_i k_i
    err   = h * sum_i b_err_i k_i                             (b_err = b - b_embedded)
    y(t + theta h) = y + h * sum_i B_i(theta) k_i,  B_i(theta) = sum_m b_dense[i][m] theta^(m+1)

A method is *FSAL* (first same as last) when its last stage is evaluated at ``(t + h, y_new)``;
the loop then reuses that stage as the next step's first one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

_TOL = 1e-12


class TableauTensors(NamedTuple):
    """A tableau cast to one dtype and device; the rows are what the fused step multiplies."""

    c: torch.Tensor  # (s,)
    a_rows: tuple[torch.Tensor | None, ...]  # row i: (i,) tensor, None for the first stage
    b: torch.Tensor  # (s,)
    b_err: torch.Tensor | None  # (s,)
    b_dense: torch.Tensor | None  # (s, d): polynomial coefficients of theta^1..theta^d
    c_list: tuple[float, ...]  # the same nodes as Python floats, for host-side time arithmetic


def _as_tuple(x: Sequence[float]) -> tuple[float, ...]:
    return tuple(float(v) for v in x)


@dataclasses.dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge–Kutta method as validated, immutable data.

    Args:
        name: the method's name, used in messages.
        c: nodes, length ``s``.
        a: strictly lower-triangular coefficients; row ``i`` has ``i`` entries (row 0 is empty).
        b: solution weights, length ``s``; they sum to 1.
        order: classical order of the ``b`` solution.
        b_err: error weights ``b - b_embedded`` (sum 0), or None for fixed-step methods.
        error_order: order of the embedded solution (sets the controller's exponent).
        b_dense: dense-output polynomials, one row per stage: ``B_i(theta) = sum_m
            b_dense[i][m] * theta**(m+1)``. Must satisfy ``B_i(1) = b_i``.
        dense_order: order of accuracy of the dense output.

    Example:
        >>> euler = ButcherTableau("euler", c=[0.0], a=[[]], b=[1.0], order=1)
        >>> euler.stages, euler.fsal
        (1, False)
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int | None = None
    b_dense: tuple[tuple[float, ...], ...] | None = None
    dense_order: int | None = None

    def __post_init__(self) -> None:
        set_ = functools.partial(object.__setattr__, self)
        set_("c", _as_tuple(self.c))
        set_("a", tuple(_as_tuple(row) for row in self.a))
        set_("b", _as_tuple(self.b))
        if self.b_err is not None:
            set_("b_err", _as_tuple(self.b_err))
        if self.b_dense is not None:
            set_("b_dense", tuple(_as_tuple(row) for row in self.b_dense))
        self._validate()

    def _validate(self) -> None:
        s, name = len(self.c), self.name

        def fail(msg: str) -> None:
            raise ValueError(f"invalid Butcher tableau {name!r}: {msg}")

        if s == 0:
            fail("it has no stages")
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            fail("`a` must be strictly lower triangular: row i must have exactly i entries")
        if len(self.b) != s:
            fail(f"`b` has {len(self.b)} entries for {s} stages")
        for i, row in enumerate(self.a):
            if abs(math.fsum(row) - self.c[i]) > _TOL:
                fail(f"row {i} of `a` sums to {math.fsum(row)!r}, but c[{i}] = {self.c[i]!r}")
        if abs(math.fsum(self.b) - 1.0) > _TOL:
            fail(f"the weights `b` sum to {math.fsum(self.b)!r}, not 1")
        if self.order < 1:
            fail("order must be at least 1")
        if self.b_err is not None:
            if len(self.b_err) != s:
                fail(f"`b_err` has {len(self.b_err)} entries for {s} stages")
            if abs(math.fsum(self.b_err)) > _TOL:
                fail(f"the error weights `b_err` sum to {math.fsum(self.b_err)!r}, not 0")
            if self.error_order is None:
                fail("an embedded error estimate needs `error_order`")
        if self.b_dense is not None:
            if len(self.b_dense) != s or len({len(r) for r in self.b_dense}) != 1:
                fail("`b_dense` needs one row of equal length per stage")
            for i, row in enumerate(self.b_dense):
                if abs(math.fsum(row) - self.b[i]) > 1e-10:
                    fail(f"dense output B_{i}(1) = {math.fsum(row)!r} differs from b[{i}]")
            if self.dense_order is None:
                fail("a dense output needs `dense_order`")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """Whether the tableau has an embedded error estimate."""
        return self.b_err is not None

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is ``f(t + h, y_new)``."""
        return (
            self.stages > 1
            and self.c[-1] == 1.0
            and self.b[-1] == 0.0
            and all(abs(x - y) <= _TOL for x, y in zip(self.a[-1], self.b[:-1]))
        )

    @functools.cache  # noqa: B019 -- tableaus are few and live for the whole program
    def to(self, dtype: torch.dtype, device: torch.device | str | None = None) -> TableauTensors:
        """The tableau as tensors of ``dtype`` on ``device`` (cached, so a solve casts once)."""
        dev = torch.device(device) if device is not None else torch.device("cpu")

        def t(x: Sequence[float] | Sequence[Sequence[float]]) -> torch.Tensor:
            return torch.tensor(x, dtype=dtype, device=dev)

        return TableauTensors(
            c=t(self.c),
            a_rows=tuple(t(row) if i else None for i, row in enumerate(self.a)),
            b=t(self.b),
            b_err=None if self.b_err is None else t(self.b_err),
            b_dense=None if self.b_dense is None else t(self.b_dense),
            c_list=self.c,
        )


def hermite_dense(b: Sequence[float], *, last_is_f1: bool, c_mid: Sequence[float] | None = None):
    """Dense-output polynomials for an FSAL method from Hermite data, as ``b_dense`` rows.

    Without ``c_mid`` this is the cubic Hermite interpolant through ``(y0, f0)`` and
    ``(y1, f1)``; with ``c_mid`` (weights giving ``y(t + h/2) = y0 + h * sum c_mid_i k_i``) it is
    the quartic that also passes through that midpoint, as torchdiffeq uses for dopri5/dopri8.
    ``f0`` is stage 0 and ``f1`` the last (FSAL) stage.

    Example:
        >>> rows = hermite_dense([1/6, 2/3, 1/6, 0.0], last_is_f1=True)
        >>> [round(sum(r), 12) for r in rows]
        [0.166666666667, 0.666666666667, 0.166666666667, 0.0]
    """
    if not last_is_f1:
        raise ValueError(
            "Hermite dense output needs the FSAL stage f(t+h, y_new) as the last stage"
        )
    s = len(b)
    f0 = np.eye(s)[0]
    f1 = np.eye(s)[-1]
    mean_slope = np.asarray(b, dtype=np.float64)  # (y1 - y0) / h
    # Unknown q_m (m = 1..d) are linear maps from stages: p(theta) = y0 + h sum_m q_m theta^m.
    rows, rhs = [], []
    degree = 3 if c_mid is None else 4
    powers = np.arange(1, degree + 1)
    rows.append((powers == 1).astype(float))  # p'(0) = f0
    rhs.append(f0)
    rows.append(np.ones(degree))  # p(1) = y1
    rhs.append(mean_slope)
    rows.append(powers.astype(float))  # p'(1) = f1
    rhs.append(f1)
    if c_mid is not None:
        rows.append(0.5**powers)  # p(1/2) = y_mid
        rhs.append(np.asarray(c_mid, dtype=np.float64))
    q = np.linalg.solve(np.array(rows), np.array(rhs))  # (degree, s)
    return tuple(tuple(float(v) for v in q[:, i]) for i in range(s))
