"""Method names (torchdiffeq's) -> method objects, and the options each method accepts.

Every name maps to a factory taking the method-level options (those that shape the step, like
``interp`` or ``perturb``); loop- and controller-level options are handled by the caller.
Unknown names are an error listing the valid ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ..errors import UnknownNameError
from .adams import Adams
from .base import Method
from .explicit import ExplicitRK
from .implicit import IMPLICIT_METHODS, ImplicitRK, Rosenbrock
from .implicit.bdf import BDF
from .tableaus import EXPLICIT_TABLEAUS

# Options that configure the loop and controller for adaptive methods (torchdiffeq's names).
ADAPTIVE_OPTIONS = frozenset(
    {
        "rtol",
        "atol",
        "min_step",
        "max_step",
        "first_step",
        "step_t",
        "jump_t",
        "safety",
        "ifactor",
        "dfactor",
        "max_num_steps",
        "dtype",
        "norm",
        "controller",
        "pcoeff",
        "icoeff",
        "dcoeff",
    }
)
# Options of fixed-step methods (torchdiffeq's names).
FIXED_OPTIONS = frozenset(
    {"step_size", "grid_constructor", "interp", "perturb", "max_num_steps", "dtype", "norm"}
)

_FACTORIES: dict[str, tuple[Callable[..., Method], frozenset[str]]] = {}


def register_method(
    name: str, factory: Callable[..., Method], method_options: frozenset[str] = frozenset()
) -> None:
    """Make ``name`` usable as ``method=name``. ``method_options`` go to ``factory(**options)``."""
    _FACTORIES[name] = (factory, method_options)


for _name, _tab in EXPLICIT_TABLEAUS.items():
    if _tab.adaptive:
        register_method(_name, lambda _t=_tab, **kw: ExplicitRK(_t, **kw), frozenset({"compile"}))
    else:
        register_method(
            _name,
            lambda _t=_tab, **kw: ExplicitRK(_t, **kw),
            frozenset({"interp", "perturb", "compile"}),
        )


# torchdiffeq's fixed-step multistep methods; "fixed_adams" is its alias of "implicit_adams".
_ADAMS_OPTIONS = frozenset({"max_order", "max_iters", "interp", "perturb"})
register_method("explicit_adams", lambda **kw: Adams(implicit=False, **kw), _ADAMS_OPTIONS)
for _name in ("implicit_adams", "fixed_adams"):
    register_method(_name, lambda **kw: Adams(implicit=True, **kw), _ADAMS_OPTIONS)


def _public_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")) - {
        "tableau"
    }


_IMPLICIT_OPTIONS = {
    ImplicitRK: _public_fields(ImplicitRK) - {"adaptive_step"},
    Rosenbrock: _public_fields(Rosenbrock),
    BDF: _public_fields(BDF),
}
_IMPLICIT_CLASS = {"rodas5": Rosenbrock, "rosenbrock23": Rosenbrock, "bdf": BDF}
for _name, _factory in IMPLICIT_METHODS.items():
    _cls = _IMPLICIT_CLASS.get(_name, ImplicitRK)
    register_method(_name, _factory, _IMPLICIT_OPTIONS[_cls])


def _trbdf2(step_size: Any = None, **options: Any) -> Method:
    # torchdiffeq's trbdf2 is fixed-step (given step_size); without one it is the adaptive ESDIRK.
    return IMPLICIT_METHODS["trbdf2"](adaptive_step=step_size is None, **options)


register_method("trbdf2", _trbdf2, _IMPLICIT_OPTIONS[ImplicitRK] | {"step_size"})


def _auto(**options: Any) -> Method:
    from .auto import AutoSwitch

    return AutoSwitch(**options)


register_method(
    "auto",
    _auto,
    frozenset({"stability_limit", "stiff_steps", "check_every", "return_limit", "compile"}),
)


def method_names() -> list[str]:
    return sorted(_FACTORIES) + ["scipy_solver"]


def make_method(name: str, options: dict[str, Any]) -> Method:
    """Build the method ``name`` with the options it understands (others are left to the caller)."""
    if name not in _FACTORIES:
        raise UnknownNameError("method", name, method_names())
    factory, own = _FACTORIES[name]
    return factory(**{k: v for k, v in options.items() if k in own})


def valid_options(name: str, method: Method) -> frozenset[str]:
    own = _FACTORIES[name][1] if name in _FACTORIES else frozenset()
    return own | (ADAPTIVE_OPTIONS if method.adaptive else FIXED_OPTIONS)
