"""Fixed-step Adams methods (``explicit_adams``, ``implicit_adams``): exact weights, empirical
convergence orders, and torchdiffeq's semantics (start-up, order ramp, corrector iterations).

Global orders, because the start-up steps are taken once whatever ``h`` (see kutta.solvers.adams):
explicit ``min(4, max_order - 1)``, implicit ``min(5, max_order)``.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn as nn

import kutta
from kutta import odeint
from kutta.solvers.adams import MAX_ORDER, Adams, adams_weights

F64 = torch.float64

# Hairer, Nørsett & Wanner, "Solving ODEs I", III.1, Tables 1.1 (Adams–Bashforth) and
# 1.2 (Adams–Moulton), as weights of f_n, f_{n-1}, ... (Moulton: f_{n+1}, f_n, ...).
BASHFORTH = {
    1: [1],
    2: [Fraction(3, 2), Fraction(-1, 2)],
    3: [Fraction(23, 12), Fraction(-16, 12), Fraction(5, 12)],
    4: [Fraction(55, 24), Fraction(-59, 24), Fraction(37, 24), Fraction(-9, 24)],
    5: [Fraction(c, 720) for c in (1901, -2774, 2616, -1274, 251)],
}
MOULTON = {
    1: [1],
    2: [Fraction(1, 2), Fraction(1, 2)],
    3: [Fraction(5, 12), Fraction(8, 12), Fraction(-1, 12)],
    4: [Fraction(9, 24), Fraction(19, 24), Fraction(-5, 24), Fraction(1, 24)],
    5: [Fraction(c, 720) for c in (251, 646, -264, 106, -19)],
}


@pytest.mark.parametrize("n", sorted(BASHFORTH))
def test_weights_match_the_textbook(n):
    assert list(adams_weights(n, implicit=False)) == BASHFORTH[n]
    assert list(adams_weights(n, implicit=True)) == MOULTON[n]


@pytest.mark.parametrize("implicit", [False, True])
@pytest.mark.parametrize("n", range(1, MAX_ORDER + 1))
def test_weights_integrate_polynomials_of_degree_below_n_exactly(n, implicit):
    """sum_j w_j x_j^m = int_0^1 s^m ds = 1/(m+1) for m < n (and not for m = n)."""
    weights = adams_weights(n, implicit)
    nodes = [(1 if implicit else 0) - j for j in range(n)]

    def quadrature(m):
        return sum(w * Fraction(x) ** m for w, x in zip(weights, nodes))

    for m in range(n):
        assert quadrature(m) == Fraction(1, m + 1)
    assert quadrature(n) != Fraction(1, n + 1)


# --- convergence -------------------------------------------------------------------------------

PROBLEMS = {
    # y' = y (1 - y), y(0) = 0.1; and y' = y cos t, y(0) = 1 (non-autonomous)
    "logistic": (
        lambda t, y: y * (1 - y),
        0.1,
        lambda t: 1 / (1 + 9 * np.exp(-t)),
        (16, 32, 64, 128),
    ),
    "sin": (lambda t, y: y * torch.cos(t), 1.0, lambda t: np.exp(np.sin(t)), (32, 64, 128, 256)),
}
T = 4.0


def error_slope(problem: str, method: Adams):
    f, y0, exact, steps = PROBLEMS[problem]
    t = torch.linspace(0.0, T, 5, dtype=F64)  # multiples of every h: no interpolation
    hs, errors = [], []
    for n in steps:
        sol = kutta.solve(
            f,
            torch.tensor([y0], dtype=F64),
            t,
            method=method,
            step_size=1.0 / n,
            # the corrector's stopping test uses the solve's tolerances
            controller=kutta.ConstantController(rtol=1e-10, atol=1e-12),
        )
        errors.append(np.abs(sol.ys[:, 0].numpy() - exact(t.numpy())).max())
        hs.append(1.0 / n)
    return float(np.polyfit(np.log(hs), np.log(errors), 1)[0]), errors


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize(
    "implicit, max_order, expected",
    [(False, 4, 3), (False, 5, 4), (True, 4, 4), (True, 5, 5), (True, MAX_ORDER, 5)],
)
def test_convergence_order(problem, implicit, max_order, expected):
    method = Adams(implicit=implicit, max_order=max_order)
    assert method.order == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the corrector must converge here
        slope, errors = error_slope(problem, method)
    assert abs(slope - expected) <= 0.3, f"slope {slope:.2f}, errors {errors}"


def test_default_explicit_adams_is_accurate_on_fine_grids():
    """With the default max_order (12) the high-order Bashforth formulas have tiny stability
    regions, so the method needs small h*|lambda| (as in torchdiffeq); there it is very accurate."""
    f, y0, exact, _ = PROBLEMS["logistic"]
    t = torch.linspace(0.0, T, 5, dtype=F64)
    sol = kutta.solve(
        f, torch.tensor([y0], dtype=F64), t, method="explicit_adams", step_size=1 / 256
    )
    assert np.abs(sol.ys[:, 0].numpy() - exact(t.numpy())).max() < 1e-11


def test_first_two_steps_are_rk4():
    f, y0, _, _ = PROBLEMS["sin"]
    t = torch.tensor([0.0, 0.1, 0.2], dtype=F64)
    kwargs = {"step_size": 0.1}
    ours = kutta.solve(f, torch.tensor([y0], dtype=F64), t, method="implicit_adams", **kwargs)
    rk4 = kutta.solve(f, torch.tensor([y0], dtype=F64), t, method="rk4", **kwargs)
    torch.testing.assert_close(ours.ys, rk4.ys, rtol=0, atol=1e-15)
    assert ours.stats["nfe"] == rk4.stats["nfe"] == 8  # f0 + 3 stages, twice


# --- torchdiffeq's semantics -------------------------------------------------------------------

A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=F64)


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        # t is 0-dim, or (B,) in per-sample mode
        return torch.tanh(y @ A.T) + 0.3 * torch.sin(t).unsqueeze(-1)


OPTION_SETS = [
    {"step_size": 0.1, "max_order": 4},
    {"step_size": 0.1, "max_order": 5, "max_iters": 2},
    {"step_size": 0.05, "max_order": 7},
    {},
    {"step_size": 0.1, "max_order": 5, "perturb": True},
]


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(map(str, o.values())))
def test_same_result_evaluations_and_warnings_as_torchdiffeq(method, options):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3]], dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    ours, theirs = Field(), Field()
    with warnings.catch_warnings(record=True) as our_warnings:
        warnings.simplefilter("always")
        a = odeint(ours, y0, t, method=method, options=dict(options), rtol=1e-6, atol=1e-8)
    with warnings.catch_warnings(record=True) as their_warnings:
        warnings.simplefilter("always")
        b = torchdiffeq.odeint(
            theirs, y0, t, method=method, options=dict(options), rtol=1e-6, atol=1e-8
        )
    # equal up to the summation order of the weighted derivatives
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert ours.calls == theirs.calls
    assert len(our_warnings) == len(their_warnings)


def test_fixed_adams_alias_reversed_time_and_tuple_state_match_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")

    def oscillator(t, state):
        x, v = state
        return v, -x - 0.2 * v

    y0 = (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64))
    t = torch.linspace(1.0, -1.0, 5, dtype=F64)
    opts = {"step_size": 0.05, "max_order": 6}
    ours = odeint(oscillator, y0, t, method="fixed_adams", options=dict(opts))
    theirs = torchdiffeq.odeint(oscillator, y0, t, method="fixed_adams", options=dict(opts))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    x_exact = odeint(oscillator, y0, t, rtol=1e-12, atol=1e-14)[0]
    torch.testing.assert_close(ours[0], x_exact, rtol=0, atol=1e-7)


def test_cubic_output_between_grid_points():
    """Hermite output: O(h^4) between grid points, against torchdiffeq's values."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    t = torch.tensor([0.0, 0.33, 1.27, 2.0], dtype=F64)
    opts = {"step_size": 0.1, "max_order": 5, "interp": "cubic"}
    ours = odeint(Field(), y0, t, method="implicit_adams", options=dict(opts))
    theirs = torchdiffeq.odeint(Field(), y0, t, method="implicit_adams", options=dict(opts))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-13)


def test_non_converging_corrector_warns_and_lowers_the_order():
    f, y0, _, _ = PROBLEMS["sin"]
    with pytest.warns(RuntimeWarning, match="corrector did not converge in 1 iterations"):
        sol = kutta.solve(
            f,
            torch.tensor([y0], dtype=F64),
            span=(0.0, 1.0),
            method=Adams(implicit=True, max_iters=1),
            step_size=0.1,
            controller=kutta.ConstantController(rtol=1e-12, atol=1e-14),
        )
    assert abs(float(sol.ys[-1, 0]) - math.exp(math.sin(1.0))) < 1e-4


# --- per-sample mode and gradients -------------------------------------------------------------


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_per_sample_mode_matches_shared_and_is_batch_independent(method):
    """Fixed steps are the same for every sample. The corrector stops per sample in per-sample
    mode but for the whole batch in shared mode (as torchdiffeq), so for implicit_adams the two
    agree to within the corrector's tolerance only; a sample alone and in a batch agree to
    round-off either way."""
    y0 = torch.tensor([[1.0, 0.5], [0.2, -0.3], [2.0, 1.0]], dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    ctl = kutta.ConstantController(rtol=1e-6, atol=1e-8)
    kwargs = {"method": Adams(implicit=method == "implicit_adams", max_order=5)}
    kwargs.update(step_size=0.05, controller=ctl)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        shared = kutta.solve(Field(), y0, t, **kwargs)
        per = kutta.solve(Field(), y0, t, batch_mode="per_sample", **kwargs)
        agreement = 1e-7 if method == "implicit_adams" else 1e-13
        torch.testing.assert_close(per.ys, shared.ys, rtol=0, atol=agreement)
        for i in range(3):
            alone = kutta.solve(Field(), y0[i : i + 1], t, batch_mode="per_sample", **kwargs)
            torch.testing.assert_close(alone.ys[:, 0], per.ys[:, i], rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_backprop_through_adams_passes_gradcheck(method):
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    def solve(y0, weight):
        return odeint(
            lambda t, y: torch.tanh(y @ weight.T) - 0.1 * t * y,
            y0,
            t,
            method=method,
            options={"step_size": 0.05, "max_order": 5, "max_iters": 10},
            rtol=1e-6,
            atol=1e-8,
        )

    y0 = torch.randn(2, dtype=F64, requires_grad=True)
    weight = torch.randn(2, 2, dtype=F64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the corrector converges throughout
        assert torch.autograd.gradcheck(solve, (y0, weight), eps=1e-6, atol=1e-6, rtol=1e-5)


# --- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, match",
    [
        ({"max_order": 13}, "max_order must be an integer from 1 to 12, got 13"),
        ({"max_order": 0}, "max_order must be an integer from 1 to 12"),
        ({"max_iters": 0}, "max_iters must be a positive integer"),
        ({"interp": "quadratic"}, "unknown interp 'quadratic'"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(kutta.InvalidArgumentError, match=match):
        odeint(
            Field(),
            torch.ones(2, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="implicit_adams",
            options={"step_size": 0.1, **options},
        )


def test_unknown_option_lists_the_adams_options():
    with pytest.raises(
        kutta.UnknownNameError, match="unknown explicit_adams option 'order'.*max_order"
    ):
        odeint(
            Field(),
            torch.ones(2, dtype=F64),
            torch.tensor([0.0, 1.0], dtype=F64),
            method="explicit_adams",
            options={"order": 3},
        )


def test_low_max_order_is_rk4_throughout():
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64)
    adams = odeint(
        Field(), y0, t, method="explicit_adams", options={"step_size": 0.1, "max_order": 3}
    )
    rk4 = odeint(Field(), y0, t, method="rk4", options={"step_size": 0.1})
    torch.testing.assert_close(adams, rk4, rtol=0, atol=1e-15)
