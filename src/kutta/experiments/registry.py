"""The experiments ``kutta train NAME`` knows.

To add one: write ``kutta/experiments/<name>.py`` with an :class:`Experiment` subclass decorated
with :func:`register`, and add the module's name to ``BUILTIN_MODULES``.
"""

from __future__ import annotations

import importlib

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.experiments.base import Experiment

BUILTIN_MODULES = (
    "kutta.experiments.spiral",
    "kutta.experiments.neural_ode",
    "kutta.experiments.anode_1d",
    "kutta.experiments.digits",
    "kutta.experiments.chirality",
    "kutta.experiments.periodic",
    "kutta.experiments.spiral_latent",
    "kutta.experiments.cnf_2d",
    "kutta.experiments.latent_sde",
    "kutta.experiments.ude_lotka_volterra",
    "kutta.experiments.fno_burgers",
    "kutta.experiments.fno_darcy",
    "kutta.experiments.pinn_burgers",
)

_REGISTRY: dict[str, type[Experiment]] = {}


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make an experiment available by its ``name``.

    Example:
        >>> @register  # doctest: +SKIP
        ... class Pendulum(Experiment):
        ...     name, description, config_class = "pendulum", "a pendulum", PendulumConfig
    """
    if _REGISTRY.get(cls.name, cls) is not cls:
        raise InvalidArgumentError(f"two experiments are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> dict[str, type[Experiment]]:
    """All registered experiments by name (importing the built-in modules on first use).

    Example:
        >>> "spiral" in available()
        True
    """
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    return dict(sorted(_REGISTRY.items()))


def get_experiment(name: str) -> Experiment:
    """An instance of the experiment called ``name``; unknown names list the valid ones."""
    experiments = available()
    if name not in experiments:
        raise UnknownNameError("experiment", name, list(experiments))
    return experiments[name]()
