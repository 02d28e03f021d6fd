"""Optional ``torch.compile``-d steps (shared batch mode): explicit Runge–Kutta here, BDF and
Rosenbrock in :mod:`kutta.solvers.implicit.bdf` and :mod:`kutta.solvers.implicit.rosenbrock`,
all through :func:`compile_step`.

Why: for small states a solve is dominated by per-operation dispatch, not arithmetic. Compiled,
one step (every stage's field call, the stage combinations and the error estimate) becomes one
graph whose elementwise work is fused, so a step costs about as much as its bare field calls.

What it needs: the step is traced with time and step size as 0-dim tensors (host floats would be
specialized into the graph and force a recompile per step) and with the user's own vector field,
whose identity is stable across solves (the loop's counting wrapper is new per solve, so tracing
it would recompile every solve). The wrapper made by :func:`kutta._inputs.normalize` therefore
exposes a :class:`CompileTarget`; wrappers without one (tuple states, the adjoint's augmented
field, jump clamping) take the eager step, which computes the same thing.

The tableau's coefficients are baked into the graph as constants, one compiled function per
tableau, time direction and :class:`GradMode`, shared by all solves; ``torch.compile`` caches
graphs per vector field and input shape on top of that (a changed batch size makes the batch
dimension dynamic after one recompile). The grad modes get functions of their own because a
solve with gradients takes two graphs (its first step starts from a state that does not require
grad, the others from one that does), and all graphs of one function share torch's recompile
limit: past 8, dynamo runs the step eagerly and says so in a warning.

Fields that count their own calls (``self.nfe += 1``, as in torchdiffeq's examples) would be
recompiled at every step, since dynamo treats integer attributes of modules as constants; kutta's
compiled functions are traced with ``torch._dynamo.config.allow_unspec_int_on_nn_module = True``
(see :func:`compile_function`), which leaves the process's setting, and so the compilation of the
user's own code, as it was.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections.abc import Callable
from typing import Any

import torch

from ..controllers import weighted_error_norm
from .tableau import ButcherTableau


@dataclasses.dataclass(frozen=True)
class CompileTarget:
    """How to call the user's field without the per-solve wrapper.

    ``f(t, y) = sign * func(sign * t, y)`` in the loop's (forward) time, where ``sign`` is -1 for
    a solve backwards in time; ``counter.calls`` is the wrapper's evaluation count.
    """

    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    reverse: bool
    time_dtype: torch.dtype
    counter: Any


class GradMode(enum.Enum):
    """What autograd records in a step; each needs its own graph (see :func:`grad_mode`)."""

    NO_GRAD = 0  # inference: torch.no_grad() or nothing requires grad
    STATE_CONSTANT = 1  # grad mode, the state does not require grad (a solve's first step)
    STATE_TRACKED = 2  # grad mode, the state requires grad


def grad_mode(y: torch.Tensor) -> GradMode:
    """The :class:`GradMode` of a step from state ``y``."""
    if not torch.is_grad_enabled():
        return GradMode.NO_GRAD
    return GradMode.STATE_TRACKED if y.requires_grad else GradMode.STATE_CONSTANT


_CACHE: dict[Any, Callable] = {}


@dataclasses.dataclass(frozen=True)
class StepKind:
    """What a compiled function computes (``name``) and the constants baked into it, as the
    first entry of a :func:`compile_step` key (as a :class:`ButcherTableau` is for RK steps)."""

    name: str
    constants: tuple = ()


def compile_step(
    key: tuple, name: str, make: Callable[[], Callable], options: dict[str, Any] | None = None
) -> Callable:
    """``torch.compile(make(), options=options)``, made once per ``key`` and shared by all solves.

    ``key[0]`` names the kind of step (a :class:`ButcherTableau` or a :class:`StepKind`).

    ``name`` names the code object of the compiled function: dynamo keeps its compiled graphs
    (and its recompile limit) per code object, so a code object of its own per key keeps the
    methods, directions and grad modes from evicting each other.
    """
    if key not in _CACHE:
        _CACHE[key] = compile_function(make(), name, options)
    return _CACHE[key]


# Integer attributes of modules as graph inputs rather than constants, so that a field counting
# its calls (``self.nfe += 1``) is not recompiled at every step. Entered inside the compiled
# function, dynamo traces this patch: the setting holds while dynamo traces kutta's function
# (first call, recompiles) and the user's setting is back after; a compiled graph never runs it
# (a config.patch around each call would cost 5-25 us, a tenth of a small step). Code that runs
# eagerly inside the function (past a graph break in the field, or every step once dynamo has
# given up on the function) runs inside the patch.
_MODULE_INTS_AS_INPUTS = torch._dynamo.patch_dynamo_config(allow_unspec_int_on_nn_module=True)


def compile_function(fn: Callable, name: str, options: dict[str, Any] | None = None) -> Callable:
    """``torch.compile(fn, options=options)`` as a function of its own called ``name`` (see
    :func:`renamed`), traced with integer attributes of modules as inputs, not constants
    (``allow_unspec_int_on_nn_module``), without changing that setting for other code.

    Example:
        >>> step = compile_function(lambda y: 2 * y, "double_NO_GRAD")
        >>> step(torch.ones(2))  # doctest: +SKIP
        tensor([2., 2.])
    """
    fn = renamed(fn, name)

    def traced(*args, **kwargs):
        with _MODULE_INTS_AS_INPUTS:
            return fn(*args, **kwargs)

    return torch.compile(renamed(traced, name), options=options)


def renamed(fn: Callable, name: str) -> Callable:
    """``fn`` with a code object of its own called ``name``: dynamo keeps compiled graphs, and
    counts them against its recompile limit, per code object, so that functions made from one
    ``def`` (closures of one maker, or one step under several grad modes) would share them.

    Example:
        >>> def step(y):
        ...     return 2 * y
        >>> renamed(step, "step_NO_GRAD").__code__.co_name
        'step_NO_GRAD'
    """
    return types.FunctionType(
        fn.__code__.replace(co_name=name), fn.__globals__, name, fn.__defaults__, fn.__closure__
    )


def skip_library_global_guards(entries: list) -> list[bool]:
    """A ``guard_filter_fn`` for ``torch.compile``'s options: keeps every guard except those on
    the globals of torch's and kutta's own modules (and builtins), which do not change while a
    program runs. Dynamo evaluates its guards at every call; a step that traces
    ``torch.func.jacrev`` carries hundreds of them on functorch internals, which cost a small
    step as much as its arithmetic. Guards on the user's field (its code, closure and module
    globals) and on the inputs stay.
    """
    library = ("G['__import_torch", "G['__import_kutta")
    return [
        not (
            entry.is_global
            and (not entry.name.startswith("G['__import_") or entry.name.startswith(library))
        )
        for entry in entries
    ]


def compiled_attempt(tableau: ButcherTableau, reverse: bool, grad_mode: GradMode) -> Callable:
    """The compiled step ``attempt(func, times, time_dtype, y, k0, tolerances)`` of a tableau.

    ``times`` is a float64 tensor holding the stage times in the user's time (``sign * (t + c_i
    h)``, rounded on the host exactly as the eager step does) followed by ``h``; ``k0`` is the
    field at ``(t, y)`` in loop time. ``tolerances`` is ``(rtol, atol, norm)`` with the
    tolerances as tensors (so that new tolerances reuse the graph), or None.

    Returns ``(y1, error, stages, k_last, error_norm)``: ``stages`` are the flattened stage
    derivatives stacked as rows ``(s, n)``, as the eager step's dense output stores them;
    ``error`` is None for a tableau without an embedded method; ``error_norm`` is the
    controller's :func:`~kutta.controllers.weighted_error_norm` of the step (None without
    ``tolerances`` or ``error``), computed in the same graph so that the loop only reads one
    number back per step.
    """
    name = f"attempt_{tableau.name}{'_reverse' if reverse else ''}_{grad_mode.name}"
    return compile_step(
        (tableau, reverse, grad_mode), name, lambda: _make_attempt(tableau, reverse)
    )


def _combine(coeffs: tuple[float, ...], ks: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j coeffs[j] * ks[j]`` over the nonzero coefficients (fused by the compiler)."""
    terms = [a * k for a, k in zip(coeffs, ks) if a != 0.0]
    if not terms:
        return torch.zeros_like(ks[0])
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _make_attempt(tableau: ButcherTableau, reverse: bool) -> Callable:
    a, b, b_err, stages_count = tableau.a, tableau.b, tableau.b_err, tableau.stages

    def attempt(func, times, time_dtype, y, k0, tolerances):
        h_state = times[stages_count].to(y.dtype)
        ks = [k0]
        y_stage = y
        for i in range(1, stages_count):
            y_stage = y + h_state * _combine(a[i], ks)
            k = func(times[i].to(time_dtype), y_stage)
            ks.append(-k if reverse else k)
        y1 = y_stage if tableau.fsal else y + h_state * _combine(b, ks)
        error = None if b_err is None else h_state * _combine(b_err, ks)
        stages = torch.stack([k.reshape(-1) for k in ks])
        error_norm = None
        if error is not None and tolerances is not None:
            rtol, atol, norm = tolerances
            with torch.no_grad():  # step-size choices are not differentiated
                error_norm = weighted_error_norm(error, y, y1, rtol, atol, norm)
        return y1, error, stages, ks[-1], error_norm

    return attempt
