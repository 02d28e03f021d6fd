"""Continuous-time models: neural ODEs, the ResNet bridge, irregular time series, flows, UDEs."""

from kutta.models._solver import SolverOptions
from kutta.models.layers import AutonomousMLP, ConcatLinear, ConcatSquashLinear, TimeMLP
from kutta.models.neural_ode import NeuralODE, ODEBlock, ODENetClassifier, ResidualStack

__all__ = [
    "AutonomousMLP",
    "ConcatLinear",
    "ConcatSquashLinear",
    "NeuralODE",
    "ODEBlock",
    "ODENetClassifier",
    "ResidualStack",
    "SolverOptions",
    "TimeMLP",
]
