"""The examples in the docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "kutta.interpolate",
    "kutta.interpolate.base",
    "kutta.interpolate.cubic",
    "kutta.interpolate.linear",
    "kutta.interpolate.prepare",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    failed, attempted = doctest.testmod(importlib.import_module(name))
    assert attempted > 0 and failed == 0
