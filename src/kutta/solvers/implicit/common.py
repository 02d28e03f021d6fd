"""What every implicit method shares: options, layouts, Jacobian evaluation, counters.

Hooks and counters the solve loop may use:

* ``method.set_error_scale(atol, rtol)``: called (on the bound copy) before ``init``; Newton's stopping test
  measures corrections in the loop's error norm (``atol + rtol * |y|``). Without the call the
  defaults ``atol=1e-9, rtol=1e-6`` are used.
* ``method.stats``: a dict of counters of the latest solve (``n_jac``, ``n_lu``,
  ``n_newton_iters``, ``n_newton_failures``). ``bind`` gives each solve a fresh dict, shared by
  the bound copy and the instance it was bound from, so either can be read afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..base import Method
from ..compiled import CompileTarget, StepKind, compile_step, skip_library_global_guards
from .linalg import ErrorScale, block_jacobian, check_layout, new_stats, to_blocks

JacFn = Callable[[Any, torch.Tensor], torch.Tensor]


def compile_options(pointwise_cat: bool = False) -> dict[str, Any]:
    """The ``torch.compile`` options of every compiled implicit graph (steps, Jacobians,
    factorizations): a C++ wrapper around the generated kernels (the Python one costs more per
    call than the arithmetic of a small system), the intermediate buffers planned into one
    allocation, and no guards on library globals (:func:`~..compiled.skip_library_global_guards`;
    compiled bdf on HIRES, ROBER and OREGO took the same steps to the same results with 11%
    less CPU time: medians of 40 interleaved solves at load 2.8 on 2 cores).

    ``pointwise_cat`` (the steps): every ``torch.cat``/``torch.stack`` (a field's output, most
    often) lowered into its consumers; inductor's default on CPU copies each input into a slice
    of a buffer, and each slice costs a tensor handle per call (64 per Rosenbrock step on HIRES).

    A new dict per call: ``torch.compile`` pops ``guard_filter_fn`` from the one it is given.

    Example:
        >>> compile_options(pointwise_cat=True)["force_pointwise_cat"]
        True
    """
    options = {
        "cpp_wrapper": True,
        "memory_planning": True,
        "guard_filter_fn": skip_library_global_guards,
    }
    if pointwise_cat:
        options["force_pointwise_cat"] = True
    return options


@contextlib.contextmanager
def quiet_jacobian_lowering() -> Iterator[None]:
    """Hides one FutureWarning from torch's own code while a graph with ``torch.func.jacrev`` or
    ``jacfwd`` compiles (torch 2.13): their standard basis is set through ``Tensor.diagonal``, and
    inductor lowers ``aten.diagonal`` with ``torch._prims_common.check``, which torch deprecates
    in favour of ``torch._check``. kutta calls nothing deprecated and a user can change nothing,
    so only this message is hidden, and only around the calls that may compile (a solve's first
    call of each graph): ``warnings.catch_warnings`` costs about 2 us.

    Example:
        >>> with quiet_jacobian_lowering():
        ...     pass
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"`torch\._prims_common\.check` is deprecated",
            category=FutureWarning,
        )
        yield


@dataclasses.dataclass(eq=False, kw_only=True)
class ImplicitMethod(Method):
    """Base of the implicit methods.

    Args:
        jac: optional ``jac(t, y)`` returning the Jacobian blocks: ``(n, n)`` for the flattened
            state in the default coupled layout, ``(B, N, N)`` with ``independent_batch`` or in
            per-sample mode. Default: autograd.
        jacobian: how autograd builds Jacobians: ``"autograd"`` (one backward pass batched
            over the n unit cotangents, best for small systems), ``"fwd"`` (n JVPs) or
            ``"rev"`` (n VJPs) vectorized by ``torch.func``.
        independent_batch: in shared mode, treat the leading dimension of the state as
            independent systems (block-diagonal Jacobian). Off by default for torchdiffeq's
            semantics, where every element may couple to every other.
        krylov_dim: Newton-based methods (ESDIRK, BDF) only: solve Newton's linear systems
            matrix-free by this many GMRES steps on Jacobian-vector products (Newton–Krylov),
            forming no Jacobian, for large states. None (default): dense LU of the blocks.
    """

    jac: JacFn | None = None
    jacobian: str = "autograd"
    independent_batch: bool = False
    krylov_dim: int | None = None

    def __post_init__(self) -> None:
        check_layout("coupled", self.jacobian)
        self.stats = new_stats()
        self._error_scale = ErrorScale(1e-9, 1e-6)

    def set_error_scale(self, atol: Any, rtol: Any) -> None:
        """Tell Newton the loop's tolerances (floats or tensors broadcastable to ``y``)."""
        self._error_scale = ErrorScale(atol, rtol)

    def bind(self, dtype: torch.dtype, device: torch.device) -> ImplicitMethod:
        bound = copy.copy(self)
        bound.stats = self.stats = new_stats()
        bound._compiled_fns = {}  # this solve's compiled functions (each class has its own keys)
        bound._dtype, bound._device = dtype, device
        return bound

    def _layout(self, t: Any) -> str:
        if isinstance(t, torch.Tensor) and t.dim() == 1:
            return "per_sample"
        return "batch" if self.independent_batch else "coupled"

    @staticmethod
    def _stage_time(t: Any, c: float, h: Any) -> Any:
        if isinstance(h, torch.Tensor):
            return t + c * h.squeeze(-1)
        return t + c * h

    @staticmethod
    def _block_fn(f: Callable, t: Any, shape: torch.Size, layout: str) -> Callable:
        """``f(t, .)`` as a map between block views."""

        def g(z: torch.Tensor) -> torch.Tensor:
            return to_blocks(f(t, z.reshape(shape)), layout)

        return g

    def _jacobian(
        self, f: Callable, t: Any, y: torch.Tensor, layout: str, keep_graph: bool = False
    ) -> torch.Tensor:
        """The ``(B, n, n)`` Jacobian blocks of ``f(t, .)`` at ``y`` (differentiable if
        ``keep_graph``)."""
        self.stats["n_jac"] += 1
        if self.jac is not None:
            jac = self.jac(t, y)
            return jac.reshape(1, *jac.shape) if layout == "coupled" else jac
        g = self._block_fn(f, t, y.shape, layout)
        return block_jacobian(g, to_blocks(y, layout), self.jacobian, keep_graph)

    def _compiled_jacobian(
        self, target: CompileTarget, t: float, y: torch.Tensor, layout: str
    ) -> torch.Tensor:
        """:meth:`_jacobian` without ``jac`` as one ``torch.compile``-d graph of the user's
        field (``torch.func.jacrev``, or ``jacfwd`` for ``jacobian="fwd"``): the eager
        Jacobian of a small field costs tens of its evaluations in dispatch alone."""
        self.stats["n_jac"] += 1
        target.counter.calls += 1  # as the eager Jacobian: one (vectorized) evaluation
        forward = self.jacobian == "fwd"
        n = to_blocks(y, layout).shape[-1]
        time = torch.tensor(-t if target.reverse else t, dtype=torch.float64, device=y.device)

        def build() -> tuple:
            # one function per block size, as the compiled steps (see bdf's)
            key = (StepKind("block_jacobian", (forward, n)), target.reverse, layout)
            name = f"block_jacobian_{layout}_n{n}{'_fwd' if forward else ''}"
            name += "_reverse" if target.reverse else ""
            make = lambda: _make_compiled_jacobian(forward, target.reverse, layout)  # noqa: E731
            return key, name, make, compile_options()

        compiled = self._compiled_function(("jacobian", target.reverse, n), build)
        return compiled(target.func, target.time_dtype, time, y)

    def _compiled_function(self, cache_key: tuple, build: Callable[[], tuple]) -> Callable:
        """This solve's compiled function for ``cache_key``; ``build()`` gives
        ``compile_step``'s ``(key, name, make, options)`` the first time. A new function comes
        wrapped so that its first call, which compiles, hides torch's own Jacobian warning
        (:func:`quiet_jacobian_lowering`); later calls pay nothing for that."""
        compiled = self._compiled_fns.get(cache_key)
        if compiled is not None:
            return compiled
        key, name, make, options = build()
        compiled = self._compiled_fns[cache_key] = compile_step(key, name, make, options=options)

        def first_call(*args: Any) -> Any:
            with quiet_jacobian_lowering():
                return compiled(*args)

        return first_call


def _make_compiled_jacobian(forward: bool, reverse: bool, layout: str) -> Callable:
    def jacobian(func, time_dtype, time, y):
        t_user = time.to(time_dtype)

        def g(z):
            out = func(t_user, z.reshape(y.shape))
            return to_blocks(-out if reverse else out, layout)

        z = to_blocks(y, layout)
        if forward:
            shift = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
            return torch.func.jacfwd(lambda u: g(z + u))(shift)
        return torch.func.jacrev(lambda x: g(x).sum(0))(z).movedim(1, 0)

    return jacobian
