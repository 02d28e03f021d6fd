"""Gradient strategies: how a solve is differentiated.

A strategy wraps the solve loop: ``strategy.run(call) -> LoopResult`` where ``call`` is a
:class:`LoopCall` (calling it runs the solve once). ``Backprop`` records the solver's operations;
``Adjoint`` (backsolve, optionally with checkpoints and the seminorm), ``InterpolatedAdjoint``
and ``RecursiveCheckpoint`` re-run the loop inside their own ``torch.autograd.Function``.
Those three support ``batch_mode="shared"``; ``Adjoint()`` without checkpoints also
``"per_sample"``. What a strategy cannot do (events, per-sample checkpoints) is refused before
the solve runs.
"""

from .adjoint import Adjoint, InterpolatedAdjoint
from .base import Backprop, LoopCall, find_params
from .checkpoint import RecursiveCheckpoint

__all__ = [
    "Adjoint",
    "Backprop",
    "InterpolatedAdjoint",
    "LoopCall",
    "RecursiveCheckpoint",
    "find_params",
]
