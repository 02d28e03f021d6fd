"""The contract between the solve and a gradient strategy, and how a strategy finds parameters.

``kutta.solve`` hands a strategy one :class:`LoopCall`: the driver and everything it needs. Calling
it runs the solve once (what ``Backprop`` does); adjoint and checkpointing strategies instead re-run
the same driver with their own settings, inside their own ``torch.autograd.Function``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from ..errors import InvalidArgumentError


@dataclasses.dataclass
class LoopCall:
    """One call of a solve driver (``integrate_shared`` or ``integrate_per_sample``).

    ``f`` is the normalized vector field (forward time, counted); ``func`` is the user's original
    callable, which strategies inspect to find the parameters to differentiate.
    """

    driver: Callable[..., Any]
    f: Callable
    y0: torch.Tensor
    times: torch.Tensor
    method: Any
    controller: Any
    cfg: Any
    counter: Any
    func: Callable | None = None

    def __call__(self, **changes: Any) -> Any:
        """Run the driver; keyword ``changes`` replace fields for this run only."""
        call = dataclasses.replace(self, **changes) if changes else self
        return call.driver(
            call.f, call.y0, call.times, call.method, call.controller, call.cfg, call.counter
        )


@dataclasses.dataclass(frozen=True)
class Backprop:
    """Differentiate through the solver's operations (exact gradients of the discrete solve).

    Memory grows linearly with the number of steps. Supports gradients of gradients.

    Example:
        >>> import torch, kutta
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> sol = kutta.solve(lambda t, y: -y, y0, t_eval=torch.tensor([0.0, 1.0]),
        ...                   gradient=kutta.Backprop())
        >>> sol.ys[-1].sum().backward()
        >>> round(float(y0.grad), 4)
        0.3679
    """

    def run(self, integrate: Callable[[], Any]) -> Any:
        return integrate()


def find_params(
    func: Callable, given: Iterable[torch.Tensor] | None, argument: str
) -> tuple[torch.Tensor, ...]:
    """The tensors an adjoint differentiates: ``given``, else an nn.Module's parameters.

    A plain callable that captures tensors needing gradients is an error: an adjoint only sees
    the parameters it is told about, so their gradients would be silently lost.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 2)
        >>> len(find_params(lin, None, "adjoint_params"))
        2
    """
    if given is not None:
        params = tuple(given)
        for i, p in enumerate(params):
            if not torch.is_tensor(p):
                raise InvalidArgumentError(
                    f"{argument}[{i}] must be a tensor, got {type(p).__name__}"
                )
        return tuple(p for p in params if p.requires_grad)
    owner = func if isinstance(func, nn.Module) else getattr(func, "__self__", None)
    if isinstance(owner, nn.Module):
        return tuple(p for p in owner.parameters() if p.requires_grad)
    hidden = _hidden_grad_tensors(func, depth=3, seen=set())
    if hidden:
        raise InvalidArgumentError(
            f"func is not an nn.Module, but it uses {hidden[0]}, which requires grad; the "
            f"adjoint would silently return no gradient for it. Pass {argument}=(...) with every "
            "tensor or parameter that func uses, or make func an nn.Module."
        )
    return ()


def _needs_grad(value: Any) -> bool:
    if torch.is_tensor(value):
        return value.requires_grad
    if isinstance(value, nn.Module):
        return any(p.requires_grad for p in value.parameters())
    return False


def _hidden_grad_tensors(obj: Any, depth: int, seen: set[int]) -> list[str]:
    """Names of tensors needing grad that ``obj`` reaches through closures, defaults, globals."""
    if depth < 0 or id(obj) in seen:
        return []
    seen.add(id(obj))
    found: list[str] = []

    def visit(name: str, value: Any) -> None:
        if _needs_grad(value):
            found.append(name)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{name}[{i}]", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(f"{name}[{k!r}]", v)
        elif isinstance(value, (types.FunctionType, types.MethodType, functools.partial)):
            found.extend(_hidden_grad_tensors(value, depth - 1, seen))

    if isinstance(obj, functools.partial):
        visit("a functools.partial argument", list(obj.args) + list(obj.keywords.values()))
        visit("the partial's function", obj.func)
        return found
    code = getattr(obj, "__code__", None)
    if code is not None:
        for name, cell in zip(code.co_freevars, obj.__closure__ or ()):
            try:
                visit(f"the captured variable {name!r}", cell.cell_contents)
            except ValueError:  # an empty cell (a name assigned after the function was made)
                continue
        for value in obj.__defaults__ or ():
            visit("a default argument", value)
        globals_ = getattr(obj, "__globals__", {})
        for name in code.co_names:
            if name in globals_:
                visit(f"the global {name!r}", globals_[name])
    owner = getattr(obj, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        for name, value in getattr(owner, "__dict__", {}).items():
            visit(f"the attribute {name!r} of the bound object", value)
    elif code is None and hasattr(obj, "__dict__") and callable(obj):
        # A callable object: look at its attributes and at its __call__.
        for name, value in vars(obj).items():
            visit(f"the attribute {name!r}", value)
        found.extend(_hidden_grad_tensors(type(obj).__call__, depth - 1, seen))
    return found
