"""Stepping methods. A method is a tableau (data) plus the generic step of its family.

Example:
    >>> import kutta
    >>> kutta.Tsit5().order, kutta.Dopri8().order
    (5, 8)
"""

from __future__ import annotations

from typing import Any

from .base import Method, StepResult
from .explicit import ExplicitRK
from .tableau import ButcherTableau
from .tableaus import (
    ADAPTIVE_HEUN,
    BOSH3,
    DOPRI5,
    DOPRI8,
    EULER,
    FEHLBERG2,
    HEUN2,
    HEUN3,
    MIDPOINT,
    RALSTON,
    RK4,
    TSIT5,
)


def _factory(tableau: ButcherTableau, doc: str):
    def make(**options: Any) -> ExplicitRK:
        return ExplicitRK(tableau, **options)

    make.__doc__ = f"{doc} (``ExplicitRK`` over the ``{tableau.name}`` tableau)."
    return make


Euler = _factory(EULER, "Forward Euler, order 1, fixed step")
Midpoint = _factory(MIDPOINT, "Explicit midpoint, order 2, fixed step")
Heun2 = _factory(HEUN2, "Heun's method, order 2, fixed step")
Heun3 = _factory(HEUN3, "Heun's third-order method, fixed step")
Ralston = _factory(RALSTON, "Ralston's method, order 2, fixed step")
RK4 = _factory(RK4, "The 3/8-rule fourth-order Runge–Kutta method, fixed step")
AdaptiveHeun = _factory(ADAPTIVE_HEUN, "Heun–Euler 2(1), adaptive")
Fehlberg2 = _factory(FEHLBERG2, "Fehlberg's RK1(2), adaptive")
Bosh3 = _factory(BOSH3, "Bogacki–Shampine 3(2), adaptive")
Dopri5 = _factory(DOPRI5, "Dormand–Prince 5(4), adaptive")
Tsit5 = _factory(TSIT5, "Tsitouras 5(4), adaptive")
Dopri8 = _factory(DOPRI8, "Dormand–Prince 8(7), adaptive")

__all__ = [
    "RK4",
    "AdaptiveHeun",
    "Bosh3",
    "ButcherTableau",
    "Dopri5",
    "Dopri8",
    "Euler",
    "ExplicitRK",
    "Fehlberg2",
    "Heun2",
    "Heun3",
    "Method",
    "Midpoint",
    "Ralston",
    "StepResult",
    "Tsit5",
]
