"""Configs as dataclasses: loaded from TOML, overridden by ``key=value`` strings, written back.

A config is a dataclass whose fields are scalars, lists of scalars, or nested config dataclasses
(sections). Keys are dotted paths (``train.lr``). Unknown keys are errors that list the valid ones,
so a typo never silently trains with a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from kutta.errors import InvalidArgumentError, UnknownNameError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    try:
        import tomli as tomllib
    except ImportError:
        tomllib = None

C = TypeVar("C")


@dataclasses.dataclass
class SolverConfig:
    """How the experiment's ODE is solved during training.

    Example:
        >>> SolverConfig(method="dopri5", rtol=1e-5).gradient
        'backprop'
    """

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-7
    #: "backprop" differentiates through the solver; "adjoint" solves the adjoint ODE backwards.
    gradient: str = "backprop"
    #: fixed step for fixed-step methods (euler, rk4, ...); 0 means "not set".
    step_size: float = 0.0

    def __post_init__(self) -> None:
        if self.gradient not in ("backprop", "adjoint"):
            raise UnknownNameError("gradient", self.gradient, ["backprop", "adjoint"])
        if self.rtol <= 0 or self.atol <= 0:
            raise InvalidArgumentError(
                f"solver.rtol and solver.atol must be positive, got {self.rtol}, {self.atol}"
            )
        if self.step_size < 0:
            raise InvalidArgumentError(f"solver.step_size must be >= 0, got {self.step_size}")

    def odeint_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``kutta.odeint`` / ``kutta.odeint_adjoint``."""
        options = {"step_size": self.step_size} if self.step_size > 0 else None
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol, "options": options}


OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "step")
DTYPES = ("float32", "float64")


@dataclasses.dataclass
class TrainConfig:
    """Optimization, logging and checkpointing settings shared by all experiments.

    Example:
        >>> TrainConfig(steps=100, lr=1e-3).optimizer
        'adam'
    """

    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    #: torch intra-op threads; 0 keeps torch's default. Small models run fastest on one thread.
    num_threads: int = 1
    steps: int = 1000
    #: global batch size (summed over all distributed processes)
    batch_size: int = 20
    optimizer: str = "adam"
    #: after the ``steps`` steps of ``optimizer``, this many L-BFGS iterations (strong Wolfe line
    #: search) on the whole training set: how PINNs and UDEs are usually brought to a tight fit
    lbfgs_steps: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    #: for schedule = "step": multiply the learning rate by ``lr_gamma`` every ``lr_step`` steps
    lr_step: int = 1000
    lr_gamma: float = 0.5
    #: maximum gradient norm; 0 disables clipping
    grad_clip: float = 0.0
    #: weight of the experiment's solver-cost regularizer (kinetic energy); 0 disables it
    nfe_weight: float = 0.0
    #: evaluate every this many steps (0: only at the end)
    eval_every: int = 0
    #: stop after this many evaluations without improvement (0 disables early stopping)
    patience: int = 0
    min_delta: float = 0.0
    #: at the end, load the parameters of the best evaluation (needs eval_every > 0)
    restore_best: bool = False
    log_every: int = 10
    checkpoint_every: int = 100
    tensorboard: bool = True

    @property
    def total_steps(self) -> int:
        """``steps`` of ``optimizer`` plus the ``lbfgs_steps`` that follow them."""
        return self.steps + self.lbfgs_steps

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UnknownNameError("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule not in SCHEDULES:
            raise UnknownNameError("schedule", self.schedule, SCHEDULES)
        if self.dtype not in DTYPES:
            raise UnknownNameError("dtype", self.dtype, DTYPES)
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InvalidArgumentError(f"train.device must be 'cpu' or 'cuda', got {self.device!r}")
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "lr_step"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "patience", "num_threads", "lbfgs_steps"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise InvalidArgumentError(f"train.lr must be positive, got {self.lr}")
        if self.grad_clip < 0 or self.nfe_weight < 0 or self.weight_decay < 0:
            raise InvalidArgumentError("train.grad_clip, nfe_weight and weight_decay must be >= 0")
        if (self.patience or self.restore_best) and not self.eval_every:
            raise InvalidArgumentError(
                "train.patience and train.restore_best need train.eval_every > 0"
            )


def config_from_dict(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    """Build the dataclass ``cls`` from nested dicts (as read from TOML), rejecting unknown keys.

    Example:
        >>> config_from_dict(TrainConfig, {"lr": 0.01}).lr
        0.01
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UnknownNameError("config key", prefix + key, [prefix + k for k in fields])
        field_type = _field_types(cls)[key]
        if dataclasses.is_dataclass(field_type):
            if not isinstance(value, dict):
                raise InvalidArgumentError(f"config key {prefix + key!r} is a section, not a value")
            kwargs[key] = config_from_dict(field_type, value, prefix + key + ".")
        else:
            kwargs[key] = _coerce(value, field_type, prefix + key)
    return cls(**kwargs)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as nested plain dicts (sections become dicts)."""
    return dataclasses.asdict(config)


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of a config class, e.g. ``["train.lr", ...]``."""
    keys = []
    for name, field_type in _field_types(cls).items():
        if dataclasses.is_dataclass(field_type):
            keys += valid_keys(field_type, prefix + name + ".")
        else:
            keys.append(prefix + name)
    return keys


def apply_overrides(config: C, overrides: list[str] | tuple[str, ...]) -> C:
    """Return a copy of ``config`` with ``key=value`` overrides applied.

    Values are parsed as TOML values when possible (``1e-3``, ``true``, ``[1, 2]``, ``"x"``),
    otherwise taken as bare strings (``method=rk4``).

    Example:
        >>> apply_overrides(TrainConfig(), ["lr=0.01", "optimizer=sgd"]).optimizer
        'sgd'
    """
    data = config_to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InvalidArgumentError(
                f"bad override {item!r}: expected key=value, e.g. train.lr=1e-3"
            )
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts):
            path = ".".join(parts[: i + 1])
            if not isinstance(node, dict) or part not in node:
                raise UnknownNameError("config key", key, valid_keys(type(config)))
            if i < len(parts) - 1:
                node = node[part]
            elif isinstance(node[part], dict):
                raise InvalidArgumentError(f"{path!r} is a section; set one of its keys instead")
        node[parts[-1]] = parse_value(raw.strip())
    return config_from_dict(type(config), data)


def parse_value(raw: str) -> Any:
    """Parse one override value as TOML, falling back to the bare string."""
    if tomllib is None:
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, with errors that name the file."""
    path = Path(path)
    if tomllib is None:  # pragma: no cover - Python 3.10 without tomli
        raise InvalidArgumentError("reading TOML on Python 3.10 needs the 'tomli' package")
    if not path.is_file():
        raise InvalidArgumentError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"{path}: invalid TOML: {exc}") from None


def to_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of scalars and lists as TOML (top-level scalars first, then sections).

    Example:
        >>> print(to_toml({"experiment": "spiral", "train": {"lr": 0.01}}).strip())
        experiment = "spiral"
        <BLANKLINE>
        [train]
        lr = 0.01
    """
    lines: list[str] = []
    sections: list[tuple[str, dict]] = []

    def emit(table: dict[str, Any], name: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                sections.append((f"{name}.{key}" if name else key, value))
            else:
                lines.append(f"{key} = {_toml_value(value)}")

    emit(data, "")
    while sections:
        name, table = sections.pop(0)
        lines.append(f"\n[{name}]")
        emit(table, name)
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InvalidArgumentError(f"cannot write {value!r} ({type(value).__name__}) to TOML")


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, field_type: Any, key: str) -> Any:
    """Check a value against a field's annotation; ints are accepted where floats are expected."""
    origin = typing.get_origin(field_type)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(field_type)
        for option in options:
            try:
                return _coerce(value, option, key)
            except InvalidArgumentError:
                continue
        raise InvalidArgumentError(f"config key {key!r}: {value!r} does not fit {field_type}")
    if field_type is type(None):
        if value is None:
            return None
    elif origin is list:
        (item_type,) = typing.get_args(field_type)
        if isinstance(value, str):  # "x,y" from the command line
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, list | tuple):
            return [_coerce(v, item_type, key) for v in value]
    elif field_type is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif field_type is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif field_type is bool:
        if isinstance(value, bool):
            return value
    elif field_type is str:
        if isinstance(value, str):
            return value
    else:
        return value
    expected = getattr(field_type, "__name__", str(field_type))
    raise InvalidArgumentError(
        f"config key {key!r} expects {expected}, got {value!r} ({type(value).__name__})"
    )
