"""Exceptions raised by kutta.

Every failure names the problem and, for mid-solve failures, carries what was computed
so far (``partial``), so a long solve that dies late is not lost.
"""

from __future__ import annotations

from typing import Any


class KuttaError(Exception):
    """Base class of every kutta exception."""


class InvalidArgumentError(KuttaError, ValueError):
    """A bad argument, detected before any work is done (shapes, dtypes, times, names)."""


class UnknownNameError(InvalidArgumentError):
    """An unknown method or option name; the message lists the valid ones."""

    def __init__(self, kind: str, name: object, valid: list[str] | tuple[str, ...]):
        self.kind, self.name, self.valid = kind, name, tuple(sorted(valid))
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(self.valid)}")


class SolverError(KuttaError, RuntimeError):
    """A solve that failed midway (NaN/inf, step-size underflow, step budget exhausted).

    Attributes:
        partial: what was computed before the failure (a ``Solution`` for native solves,
            or the tensor of outputs reached so far for the torchdiffeq-style API), or None.
        t: the time at which the failure happened, if known.
    """

    def __init__(self, message: str, *, partial: Any = None, t: float | None = None):
        super().__init__(message)
        self.partial = partial
        self.t = t
