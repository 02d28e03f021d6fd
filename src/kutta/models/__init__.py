"""Continuous-time models: neural ODEs, the ResNet bridge, irregular time series, flows, UDEs."""

from kutta.models._solver import SolverOptions
from kutta.models.cde import CDEVectorField, NeuralCDE, control_path
from kutta.models.cnf import CNF, CNFOutput
from kutta.models.gru_delta import GRUDelta
from kutta.models.latent_ode import ELBO, LatentODE, Posterior
from kutta.models.latent_sde import LatentSDE, LatentSDEELBO
from kutta.models.layers import AutonomousMLP, ConcatLinear, ConcatSquashLinear, TimeMLP
from kutta.models.neural_ode import NeuralODE, ODEBlock, ODENetClassifier, ResidualStack
from kutta.models.ode_rnn import ODERNN, ODERNNOutput
from kutta.models.ude import UDE, polynomial_library, stlsq

__all__ = [
    "AutonomousMLP",
    "CDEVectorField",
    "CNF",
    "CNFOutput",
    "ConcatLinear",
    "ConcatSquashLinear",
    "ELBO",
    "GRUDelta",
    "LatentODE",
    "LatentSDE",
    "LatentSDEELBO",
    "NeuralCDE",
    "NeuralODE",
    "ODEBlock",
    "ODENetClassifier",
    "ODERNN",
    "ODERNNOutput",
    "Posterior",
    "ResidualStack",
    "SolverOptions",
    "TimeMLP",
    "UDE",
    "control_path",
    "polynomial_library",
    "stlsq",
]
