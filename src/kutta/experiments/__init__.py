"""Built-in experiments: one module each (data + model + metrics + plots), registered by name."""

from kutta.experiments.base import Experiment
from kutta.experiments.registry import BUILTIN_MODULES, available, get_experiment, register

__all__ = ["BUILTIN_MODULES", "Experiment", "available", "get_experiment", "register"]
