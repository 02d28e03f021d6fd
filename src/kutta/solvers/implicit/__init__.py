"""Implicit (stiff) methods: Rosenbrock, ESDIRK and fixed-step implicit Runge–Kutta.

``IMPLICIT_METHODS`` maps each name to a factory taking the method's options as keywords::

    method = IMPLICIT_METHODS["rodas5"](jacobian="rev", independent_batch=True)
    method = IMPLICIT_METHODS["bdf"](krylov_dim=30)   # matrix-free Newton-Krylov, large states

Adaptive: ``rodas5``, ``rosenbrock23`` (Rosenbrock); ``kvaerno3``, ``kvaerno5``, ``trbdf2``
(ESDIRK); ``bdf`` (variable order 1-5, CVODE's step and order rules; ``ndf=True`` for
ode15s's NDF formulas). Fixed-step, under torchdiffeq's names: ``implicit_euler``,
``implicit_midpoint``, ``trapezoid``, ``radauIIA3``, ``radauIIA5``, ``gl4``, ``gl6``,
``sdirk2``; ``trbdf2`` with ``adaptive_step=False`` is torchdiffeq's fixed-step TR-BDF2.

Example:
    >>> sorted(IMPLICIT_METHODS)[:3]
    ['bdf', 'gl4', 'gl6']
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..base import Method
from . import tableaus
from .bdf import BDF, bdf
from .common import ImplicitMethod
from .implicit_rk import ImplicitRK
from .rosenbrock import Rosenbrock, rodas5, rosenbrock23


def _irk(tableau: tableaus.DIRKTableau, adaptive: bool) -> Callable[..., ImplicitRK]:
    factory = functools.partial(ImplicitRK, tableau, adaptive_step=adaptive)
    functools.update_wrapper(factory, ImplicitRK)
    return factory


IMPLICIT_METHODS: dict[str, Callable[..., Method]] = {
    "rodas5": rodas5,
    "rosenbrock23": rosenbrock23,
    "kvaerno3": _irk(tableaus.KVAERNO3, True),
    "kvaerno5": _irk(tableaus.KVAERNO5, True),
    "trbdf2": _irk(tableaus.TRBDF2, True),
    "bdf": bdf,
    "implicit_euler": _irk(tableaus.IMPLICIT_EULER, False),
    "implicit_midpoint": _irk(tableaus.IMPLICIT_MIDPOINT, False),
    "trapezoid": _irk(tableaus.TRAPEZOID, False),
    "sdirk2": _irk(tableaus.SDIRK2, False),
    "radauIIA3": _irk(tableaus.RADAU_IIA3, False),
    "radauIIA5": _irk(tableaus.RADAU_IIA5, False),
    "gl4": _irk(tableaus.GL4, False),
    "gl6": _irk(tableaus.GL6, False),
}

__all__ = ["BDF", "IMPLICIT_METHODS", "ImplicitMethod", "ImplicitRK", "Rosenbrock"]
