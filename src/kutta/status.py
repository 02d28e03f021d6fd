"""Per-sample status codes of a solve (as in torchode: one code per batch element)."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Why a sample's integration ended. ``SUCCESS`` is 0 so ``(status == 0).all()`` reads well."""

    SUCCESS = 0
    MAX_STEPS = 1  #: the step budget (``max_num_steps``) ran out
    DT_UNDERFLOW = 2  #: the step size fell below ``min_step`` or machine precision
    NONFINITE = 3  #: the vector field or the error estimate produced NaN/inf
    EVENT = 4  #: a terminal event stopped the integration
    RUNNING = -1  #: still integrating (only seen inside the loop)

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.SUCCESS: "success",
    Status.MAX_STEPS: "maximum number of steps reached",
    Status.DT_UNDERFLOW: "step size underflow",
    Status.NONFINITE: "non-finite values (NaN/inf) in the state or the error estimate",
    Status.EVENT: "terminated by an event",
    Status.RUNNING: "running",
}
