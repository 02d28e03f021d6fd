"""The restricted expression language of `kutta solve`: what it computes and what it refuses."""

import math

import pytest
import torch

from kutta.cli.expression import parse_rhs, parse_time_span, parse_vector
from kutta.errors import InvalidArgumentError

T = torch.tensor(0.5, dtype=torch.float64)


@pytest.mark.parametrize(
    "text, y, expected",
    [
        ("dy/dt = -y + sin(t)", [2.0], [-2.0 + math.sin(0.5)]),
        ("y' = y**2 / 2 - 3 % 2", [3.0], [3.5]),
        ("-y", [1.5], [-1.5]),
        ("dy/dt = 1", [7.0], [1.0]),
        ("exp(-t) * sqrt(abs(y)) + pi - e", [4.0], [math.exp(-0.5) * 2 + math.pi - math.e]),
        ("[y[1], -y[0] - 0.1 * y[1]]", [1.0, 2.0], [2.0, -1.2]),
        ("dy/dt = [max(y[0], t), min(y[1], t)]", [0.0, 1.0], [0.5, 0.5]),
        ("tanh(y) + atan(t) + log(1 + t)", [0.0], [math.atan(0.5) + math.log(1.5)]),
    ],
)
def test_expressions_compute_the_right_values(text, y, expected):
    f = parse_rhs(text)
    out = f(T, torch.tensor(y, dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os').system('echo hi')", "unknown function"),
        ("y.__class__", "not allowed"),
        ("open('x')", "unknown function"),
        ("lambda: 1", "not allowed"),
        ("[x for x in y]", "not allowed"),
        ("z + 1", "unknown name 'z'"),
        ("y['a']", "whole number"),
        ("t[0]", "only y can be indexed"),
        ("sin(y, key=1)", "unknown function"),
        ("dy/dt = ", "empty"),
        ("dy/dt = y +", "cannot parse"),
        ("'text'", "not allowed"),
        ("y == 1", "not allowed"),
    ],
)
def test_everything_else_is_refused_before_running(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse_rhs(text)


def test_index_out_of_range_is_explained():
    f = parse_rhs("y[2]")
    with pytest.raises(InvalidArgumentError, match="y has 2 component"):
        f(T, torch.zeros(2))


def test_overflow_gives_inf_not_an_exception():
    assert torch.isinf(parse_rhs("9.0 ** 9 ** 9")(T, torch.zeros(1))).all()


def test_module_paths_import_a_function():
    f = parse_rhs("torch:sub")  # any importable callable f(t, y)
    assert f(torch.tensor(3.0), torch.tensor(1.0)).item() == 2.0
    with pytest.raises(InvalidArgumentError, match="cannot import"):
        parse_rhs("no_such_module_xyz:f")
    with pytest.raises(InvalidArgumentError, match="has no function"):
        parse_rhs("math:no_such_function")


def test_time_spans_and_vectors():
    assert parse_time_span("0:10") == (0.0, 10.0, 200)
    assert parse_time_span("1:-1:5") == (1.0, -1.0, 5)
    for bad in ["0", "0:a", "1:1", "0:1:1", "0:inf"]:
        with pytest.raises(InvalidArgumentError, match="bad time span"):
            parse_time_span(bad)
    assert parse_vector("1,0.5") == [1.0, 0.5]
    with pytest.raises(InvalidArgumentError, match="--y0"):
        parse_vector("1,x")
