"""The examples in the models' docstrings run and print what they claim."""

import doctest
import importlib

import pytest

MODULES = [
    "layers",
    "neural_ode",
    "ode_rnn",
    "latent_ode",
    "latent_sde",
    "cde",
    "cnf",
    "ude",
    "_solver",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"kutta.models.{name}")
    result = doctest.testmod(module, extraglobs={"torch": importlib.import_module("torch")})
    assert result.attempted > 0 and result.failed == 0
