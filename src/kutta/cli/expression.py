"""Right-hand sides from the command line: a restricted expression language, or ``module:function``.

Expressions are parsed with :mod:`ast` and only arithmetic, numbers, ``t``, ``y``, ``y[i]``,
``pi``, ``e`` and the functions in :data:`FUNCTIONS` are accepted; anything else (attributes,
other names, comprehensions, ...) is rejected before anything runs. Nothing is passed to ``eval``.
"""

from __future__ import annotations

import ast
import importlib
import math
import operator
import re
from collections.abc import Callable

import torch

from kutta.errors import InvalidArgumentError

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sin": torch.sin,
    "cos": torch.cos,
    "tan": torch.tan,
    "asin": torch.asin,
    "acos": torch.acos,
    "atan": torch.atan,
    "sinh": torch.sinh,
    "cosh": torch.cosh,
    "tanh": torch.tanh,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "sign": torch.sign,
    "sigmoid": torch.sigmoid,
    "floor": torch.floor,
    "min": torch.minimum,
    "max": torch.maximum,
}
CONSTANTS = {"pi": math.pi, "e": math.e}
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_LHS = re.compile(r"^\s*(d\s*y\s*/\s*d\s*t|y\s*')\s*=(?!=)")
_MODULE_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Node = Callable[[torch.Tensor, torch.Tensor], torch.Tensor | float]


def parse_rhs(text: str) -> Field:
    """``f(t, y)`` from ``"dy/dt = -y + sin(t)"``, ``"[y[1], -y[0]]"`` or ``"pkg.module:func"``.

    The ``dy/dt =`` (or ``y' =``) prefix is optional. A list gives a system: entry ``i`` is
    ``dy[i]/dt``.

    Example:
        >>> f = parse_rhs("dy/dt = -y + sin(t)")
        >>> f(torch.tensor(0.0), torch.tensor([2.0]))
        tensor([-2.])
    """
    text = text.strip()
    if _MODULE_PATH.match(text):
        return _import_function(text)
    body = _LHS.sub("", text, count=1).strip()
    if not body:
        raise InvalidArgumentError(f"empty right-hand side in {text!r}")
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as exc:
        raise InvalidArgumentError(f"cannot parse {body!r}: {exc.msg}") from None
    if isinstance(tree.body, ast.List | ast.Tuple):
        parts = [_compile(element) for element in tree.body.elts]
        if not parts:
            raise InvalidArgumentError("an empty list is not a right-hand side")

        def system(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            values = [torch.as_tensor(part(t, y), dtype=y.dtype, device=y.device) for part in parts]
            return torch.stack(torch.broadcast_tensors(*values), dim=-1).reshape(y.shape)

        system.dimension = len(parts)  # type: ignore[attr-defined]
        return system
    single = _compile(tree.body)

    def scalar(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.broadcast_to(
            torch.as_tensor(single(t, y), dtype=y.dtype, device=y.device), y.shape
        )

    return scalar


def _import_function(path: str) -> Field:
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidArgumentError(f"cannot import module {module_name!r}: {exc}") from None
    func = getattr(module, name, None)
    if not callable(func):
        raise InvalidArgumentError(f"{module_name!r} has no function {name!r}")
    return func


def _compile(node: ast.AST) -> Node:
    """Turn an expression tree into nested closures, refusing every construct not listed."""
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        # A tensor, not a float: arithmetic stays in torch (inf instead of OverflowError).
        value = torch.tensor(float(node.value), dtype=torch.float64)
        return lambda t, y: value
    if isinstance(node, ast.Name):
        if node.id == "t":
            return lambda t, y: t
        if node.id == "y":
            return lambda t, y: y
        if node.id in CONSTANTS:
            constant = torch.tensor(CONSTANTS[node.id], dtype=torch.float64)
            return lambda t, y: constant
        raise InvalidArgumentError(
            f"unknown name {node.id!r}; use t, y, y[i], pi, e and the functions "
            f"{', '.join(sorted(FUNCTIONS))}"
        )
    if isinstance(node, ast.Subscript):
        if not (isinstance(node.value, ast.Name) and node.value.id == "y"):
            raise InvalidArgumentError("only y can be indexed, as in y[0]")
        index = node.slice
        if not (isinstance(index, ast.Constant) and type(index.value) is int):
            raise InvalidArgumentError("an index must be a whole number, as in y[0]")
        i = index.value

        def component(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if not -y.shape[-1] <= i < y.shape[-1]:
                raise InvalidArgumentError(
                    f"y[{i}] is out of range: y has {y.shape[-1]} component(s)"
                )
            return y[..., i]

        return component
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op, left, right = _BINARY[type(node.op)], _compile(node.left), _compile(node.right)
        return lambda t, y: op(left(t, y), right(t, y))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        op, operand = _UNARY[type(node.op)], _compile(node.operand)
        return lambda t, y: op(operand(t, y))
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS) or node.keywords:
            shown = ast.unparse(node.func)
            raise InvalidArgumentError(
                f"unknown function {shown!r}; allowed: {', '.join(sorted(FUNCTIONS))}"
            )
        func, args = FUNCTIONS[node.func.id], [_compile(a) for a in node.args]

        def call(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            values = [torch.as_tensor(a(t, y), dtype=y.dtype, device=y.device) for a in args]
            try:
                return func(*values)
            except TypeError as exc:
                raise InvalidArgumentError(f"{node.func.id}(...): {exc}") from None

        return call
    raise InvalidArgumentError(f"{ast.unparse(node)!r} is not allowed in an expression")


def parse_time_span(text: str) -> tuple[float, float, int]:
    """``"0:10"`` or ``"0:10:500"`` -> (start, end, number of output points; default 200).

    Example:
        >>> parse_time_span("0:10:11")
        (0.0, 10.0, 11)
    """
    parts = text.split(":")
    try:
        if len(parts) == 2:
            start, end, count = float(parts[0]), float(parts[1]), 200
        elif len(parts) == 3:
            start, end, count = float(parts[0]), float(parts[1]), int(parts[2])
        else:
            raise ValueError
    except ValueError:
        raise InvalidArgumentError(
            f"bad time span {text!r}: expected START:END or START:END:POINTS, e.g. 0:10"
        ) from None
    if not (math.isfinite(start) and math.isfinite(end)) or start == end:
        raise InvalidArgumentError(
            f"bad time span {text!r}: START and END must differ and be finite"
        )
    if count < 2:
        raise InvalidArgumentError(f"bad time span {text!r}: need at least 2 output points")
    return start, end, count


def parse_vector(text: str, name: str = "--y0") -> list[float]:
    """``"1"`` or ``"1,0"`` -> a list of floats."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidArgumentError(
            f"bad {name} {text!r}: expected numbers separated by commas"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise InvalidArgumentError(f"bad {name} {text!r}: values must be finite")
    return values
