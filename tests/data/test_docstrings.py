"""The examples in the docstrings run and give what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "kutta.data",
    "kutta.data.batch",
    "kutta.data.collate",
    "kutta.data.load",
    "kutta.data.normalize",
    "kutta.data.splits",
    "kutta.data.union",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    failed, attempted = doctest.testmod(importlib.import_module(name))
    assert attempted > 0 and failed == 0
