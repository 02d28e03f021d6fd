"""The contract between a stepping method and the solve loop.

A *method* advances the state by one step of a given size. It knows its order and how to
interpolate inside the step it just took; it knows nothing about tolerances, output times,
budgets or batches (those belong to the loop and the controller).

The loop calls, for one solve::

    method = method.bind(dtype, device)              # cast coefficients once per solve
    state  = method.init(f, t0, y0)                  # e.g. caches f(t0, y0)
    loop:
        res = method.step(f, t, y, h, state)         # never mutates `state`
        ... controller decides from res.error ...
        if accepted: y, state = res.y, res.state
        y_at = method.interpolate(res.dense, theta)  # theta in [0, 1] inside the step

Shapes. In ``"shared"`` batch mode ``t`` and ``h`` are Python floats and ``y`` has the user's
shape. In ``"per_sample"`` mode ``t`` has shape ``(B,)``, ``h`` has shape ``(B, 1)`` (it broadcasts
against ``y`` of shape ``(B, N)``), and every operation must act on each row independently, so
that a sample's result never depends on the rest of the batch. ``f(t, y)`` returns ``dy/dt`` in
the shape of ``y``. A method counts nothing: the loop wraps ``f`` to count evaluations.

In per-sample mode the loop merges accepted and rejected samples and drops finished ones, so
``state`` must be None, a tensor, or a (nested) tuple of tensors whose first dimension is the
batch; it may hold no Python numbers that differ between samples.

``StepResult.error`` is the local error estimate in the shape of ``y`` (``None`` for fixed-step
methods); the loop turns it into a weighted norm.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple

import torch

VectorField = Callable[[Any, torch.Tensor], torch.Tensor]


class StepResult(NamedTuple):
    y: torch.Tensor  #: the proposed state at t + h
    error: torch.Tensor | None  #: the local error estimate (shape of y), None if fixed-step
    dense: Any  #: whatever `interpolate` needs for this step (opaque to the loop)
    state: Any  #: the method's state after this step, used only if the step is accepted
    #: the method's own next step size if this step is accepted (a float in shared mode, ``(B,)``
    #: per sample), for methods that choose order and step together (``bdf``); None: the
    #: controller's choice. Rejected steps are always sized by the controller.
    h_next: Any = None
    #: the controller's weighted error norm of this step (a 0-dim tensor), for a method that
    #: computed it inside its step (see ``Method.set_error_norm``); None: the loop computes it
    error_norm: Any = None


class Method(abc.ABC):
    """A one-step method. Subclasses set ``name``, ``order`` and, if adaptive, ``error_order``.

    ``error_order`` is the order of the embedded (lower-order) solution; the controller uses
    ``min(order, error_order) + 1`` as the exponent of its error model.
    """

    name: str = "method"
    order: int = 1
    error_order: int | None = None

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    def bind(self, dtype: torch.dtype, device: torch.device) -> Method:
        """A copy ready for one solve in ``dtype`` on ``device`` (default: ``self``)."""
        return self

    def set_error_scale(self, atol: Any, rtol: Any) -> None:
        """Called by the loop after ``bind`` and before ``init`` with the controller's tolerances.

        Implicit methods stop their Newton iterations in the loop's error norm; explicit ones
        ignore it.
        """
        return None

    def set_error_norm(
        self, rtol: Any, atol: Any, norm: Callable[[torch.Tensor], torch.Tensor]
    ) -> None:
        """Called by the loop in shared mode, after ``bind``, with the controller's tolerances
        and norm.

        A method that can compute the controller's weighted error norm inside its own step more
        cheaply than the loop can afterwards (the compiled explicit step folds it into its graph)
        keeps them and returns ``StepResult.error_norm``, which must be exactly
        :func:`kutta.controllers.weighted_error_norm` of the step. The default ignores them.
        """
        return None

    @abc.abstractmethod
    def init(self, f: VectorField, t0: Any, y0: torch.Tensor) -> Any:
        """The method state at the start of a solve."""

    @abc.abstractmethod
    def step(self, f: VectorField, t: Any, y: torch.Tensor, h: Any, state: Any) -> StepResult:
        """Propose one step of size ``h`` from ``(t, y)``. Must not mutate ``state``."""

    def interpolate(self, dense: Any, theta: Any) -> torch.Tensor:
        """The state at ``t + theta * h`` inside the step that produced ``dense``.

        ``theta`` is a float, or a tensor of shape ``(B, 1)`` in per-sample mode.
        The default is linear interpolation between the step's end points.
        """
        y0, y1 = dense[0], dense[1]
        return torch.lerp(y0, y1, theta) if isinstance(theta, float) else y0 + theta * (y1 - y0)

    def interpolate_many(self, dense: Any, thetas: list[float]) -> torch.Tensor:
        """The states at several ``theta`` (host floats) inside one step, stacked: ``(m, *y.shape)``.

        Shared mode only. A dense output grid puts many output times in one step; methods whose
        interpolant is a polynomial override this to evaluate them all in one operation. The
        default calls :meth:`interpolate` per theta.
        """
        return torch.stack([self.interpolate(dense, theta) for theta in thetas])

    def reset_after_discontinuity(self, state: Any) -> Any:
        """The state to use after a jump in ``f`` (``jump_t``): drop cached derivatives."""
        return state

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
