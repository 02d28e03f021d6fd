"""The explicit tableaus: Butcher order conditions, embedded and dense orders, validation.

Order theory (Butcher, "Numerical Methods for Ordinary Differential Equations", 3rd ed. 2016,
ch. 3): a method has order p iff ``sum_i b_i Phi_i(t) = 1 / gamma(t)`` for every rooted tree t
with at most p vertices. A dense output ``B_i(theta)`` has order q iff
``sum_i B_i(theta) Phi_i(t) = theta^|t| / gamma(t)`` for every tree with at most q vertices.
Each claimed order is checked to hold *and* to be exact (some condition one order higher fails).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pytest

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.solvers.tableau import ButcherTableau, hermite_dense
from kutta.solvers.tableaus import EXPLICIT_TABLEAUS, get_tableau

# The coefficients are floats, so conditions hold to rounding (worst seen: 2e-14 for tsit5,
# whose published coefficients carry ~20 digits); a failing condition is off by >= 8e-6.
HOLDS = 1e-12
FAILS = 1e-7

ADAPTIVE = [name for name, tab in EXPLICIT_TABLEAUS.items() if tab.adaptive]
THETAS = (0.1, 0.25, 0.5, 0.7, 0.9, 1.0)


# --- rooted trees ------------------------------------------------------------------------------
# A tree is the sorted tuple of its children's subtrees; the single vertex is ().


@functools.cache
def trees_of_order(n: int) -> tuple[tuple, ...]:
    """All rooted trees with n vertices, each once (grown by adding a leaf to every vertex)."""
    if n == 1:
        return ((),)
    grown = {g for tree in trees_of_order(n - 1) for g in _add_one_leaf(tree)}
    return tuple(sorted(grown))


def _add_one_leaf(tree: tuple):
    yield tuple(sorted((*tree, ())))
    for i, child in enumerate(tree):
        for bigger in _add_one_leaf(child):
            yield tuple(sorted((*tree[:i], bigger, *tree[i + 1 :])))


def vertices(tree: tuple) -> int:
    return 1 + sum(vertices(child) for child in tree)


def density(tree: tuple) -> int:
    return vertices(tree) * math.prod(density(child) for child in tree)


def elementary_weights(tree: tuple, a: np.ndarray) -> np.ndarray:
    """Phi_i(tree) for every stage i: the product over children of (A Phi(child))_i."""
    phi = np.ones(a.shape[0])
    for child in tree:
        phi = phi * (a @ elementary_weights(child, a))
    return phi


def a_matrix(tab: ButcherTableau) -> np.ndarray:
    a = np.zeros((tab.stages, tab.stages))
    for i, row in enumerate(tab.a):
        a[i, :i] = row
    return a


def worst_residual(tab: ButcherTableau, weights: np.ndarray, n: int, theta: float = 1.0):
    """max over trees with n vertices of |sum_i w_i Phi_i(t) - theta^n / gamma(t)|."""
    a = a_matrix(tab)
    return max(
        abs(weights @ elementary_weights(tree, a) - theta**n / density(tree))
        for tree in trees_of_order(n)
    )


def dense_weights(tab: ButcherTableau, theta: float) -> np.ndarray:
    rows = np.array(tab.b_dense)
    return rows @ theta ** np.arange(1, rows.shape[1] + 1)


def dense_slopes(tab: ButcherTableau, theta: float) -> np.ndarray:
    """d/dtheta B_i(theta): the interpolant's slope, in units of the stages k_i."""
    rows = np.array(tab.b_dense)
    powers = np.arange(1, rows.shape[1] + 1)
    return rows @ (powers * theta ** (powers - 1.0))


# --- the tree machinery itself -----------------------------------------------------------------


def test_tree_counts_match_oeis_a000081():
    # Number of rooted trees with n vertices: OEIS A000081.
    assert [len(trees_of_order(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


def test_densities_of_known_trees():
    bushy = tuple(() for _ in range(4))  # root with 4 leaves: gamma = 5
    tall = ((((),),),)  # a path of 4 vertices: gamma = 4!
    assert density(bushy) == 5
    assert density(tall) == 24
    assert density(((), ((),))) == 8  # gamma of [tau, [tau]] (Butcher 2016, table 310(I))


def test_weights_reproduce_the_textbook_elementary_weights():
    # Butcher (2016), table 310(I): the eight trees with <= 4 vertices, as b^T(...) with
    # c = A 1, keyed by their densities (distinct up to order 4). Random A and b, so no
    # method-specific coincidence can hide a mistake.
    rng = np.random.default_rng(0)
    a = np.tril(rng.normal(size=(5, 5)), k=-1)
    b, c = rng.normal(size=5), a.sum(axis=1)
    by_hand = {
        1: b.sum(),
        2: b @ c,
        3: b @ c**2,
        6: b @ a @ c,
        4: b @ c**3,
        8: b @ (c * (a @ c)),
        12: b @ a @ c**2,
        24: b @ a @ a @ c,
    }
    from_trees = {
        density(t): b @ elementary_weights(t, a) for n in range(1, 5) for t in trees_of_order(n)
    }
    assert from_trees.keys() == by_hand.keys()
    for gamma, value in by_hand.items():
        assert from_trees[gamma] == pytest.approx(value, rel=1e-12)


# --- order conditions of every tableau ---------------------------------------------------------


@pytest.mark.parametrize("name", list(EXPLICIT_TABLEAUS))
def test_solution_has_exactly_the_claimed_order(name):
    tab = get_tableau(name)
    b = np.array(tab.b)
    for n in range(1, tab.order + 1):
        assert worst_residual(tab, b, n) < HOLDS, f"{name}: an order-{n} condition fails"
    assert worst_residual(tab, b, tab.order + 1) > FAILS, f"{name}: order understated"


@pytest.mark.parametrize("name", ADAPTIVE)
def test_embedded_solution_has_exactly_the_claimed_order(name):
    tab = get_tableau(name)
    embedded = np.array(tab.b) - np.array(tab.b_err)
    for n in range(1, tab.error_order + 1):
        assert worst_residual(tab, embedded, n) < HOLDS, f"{name}: order-{n} condition fails"
    assert worst_residual(tab, embedded, tab.error_order + 1) > FAILS


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_has_exactly_the_claimed_order(name):
    tab = get_tableau(name)
    for theta in THETAS:
        weights = dense_weights(tab, theta)
        for n in range(1, tab.dense_order + 1):
            assert worst_residual(tab, weights, n, theta) < HOLDS, f"{name}: theta={theta}, n={n}"
    one_higher = max(
        worst_residual(tab, dense_weights(tab, theta), tab.dense_order + 1, theta)
        for theta in THETAS
    )
    assert one_higher > FAILS, f"{name}: dense order understated"


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_meets_the_step_ends_with_matching_slopes(name):
    # B(0) = 0 and B(1) = b put the interpolant through y0 and y1; B'(0) = e_first and
    # B'(1) = e_last give it slopes f(t, y0) and f(t + h, y1), so the piecewise dense solution
    # is continuously differentiable across steps.
    tab = get_tableau(name)
    # dopri8's continuous extension is published as 20-digit decimals next to rational
    # approximations of its tableau, so its end conditions hold to ~1e-11, not to round-off.
    tol = 1e-10 if name == "dopri8" else 1e-12
    first, last = np.eye(tab.stages)[0], np.eye(tab.stages)[-1]
    np.testing.assert_allclose(dense_weights(tab, 0.0), 0.0, atol=0)
    np.testing.assert_allclose(dense_weights(tab, 1.0), tab.b, atol=tol)
    np.testing.assert_allclose(dense_slopes(tab, 0.0), first, atol=tol)
    np.testing.assert_allclose(dense_slopes(tab, 1.0), last, atol=tol)


# --- structure ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ADAPTIVE)
def test_adaptive_tableaus_are_fsal(name):
    tab = get_tableau(name)
    assert tab.fsal
    assert tab.c[-1] == 1.0 and tab.b[-1] == 0.0
    assert tab.a[-1] == pytest.approx(tab.b[:-1], abs=1e-15)


@pytest.mark.parametrize("name", ["euler", "midpoint", "heun2", "heun3", "ralston", "rk4"])
def test_fixed_step_tableaus_have_no_estimate_or_dense_output(name):
    tab = get_tableau(name)
    assert not tab.adaptive and tab.error_order is None
    assert tab.b_dense is None and tab.dense_order is None


# Error weights as torchdiffeq 0.2.5 stores them (c_error in torchdiffeq/_impl/{adaptive_heun,
# fehlberg2,bosh3,dopri5,dopri8}.py; tsit5 from OrdinaryDiffEq.jl, sign fixed in its #1654),
# at the entries that fix the sign convention.
TORCHDIFFEQ_ERROR_WEIGHTS = {
    "adaptive_heun": {0: 0.5, 1: -0.5, 2: 0.0},
    "fehlberg2": {0: -1 / 512, 1: 0.0, 2: 1 / 512, 3: 0.0},
    "bosh3": {0: 2 / 9 - 7 / 24, 3: -1 / 8},
    "dopri5": {0: 35 / 384 - 1951 / 21600, 4: -2187 / 6784 + 12231 / 42400, 6: -1 / 60},
    "tsit5": {0: 0.09646076681806523 - 0.09468075576583945, 6: -1 / 66},
    "dopri8": {11: -528747749 / 2220607170 - 2 / 45, 12: 1 / 4, 13: 0.0},
}


@pytest.mark.parametrize("name", ADAPTIVE)
def test_error_weights_follow_torchdiffeq(name):
    tab = get_tableau(name)
    for stage, weight in TORCHDIFFEQ_ERROR_WEIGHTS[name].items():
        assert tab.b_err[stage] == pytest.approx(weight, rel=1e-14, abs=1e-16)


def test_torchdiffeq_rk4_is_the_three_eighths_rule():
    assert get_tableau("rk4").b == (1 / 8, 3 / 8, 3 / 8, 1 / 8)
    assert get_tableau("rk4_classic").b == pytest.approx((1 / 6, 1 / 3, 1 / 3, 1 / 6))


def test_registry_covers_torchdiffeq_runge_kutta_names():
    torchdiffeq_rk = {"euler", "midpoint", "heun2", "heun3", "rk4"}
    torchdiffeq_rk |= {"adaptive_heun", "fehlberg2", "bosh3", "dopri5", "dopri8"}
    assert torchdiffeq_rk <= set(EXPLICIT_TABLEAUS)
    assert all(tab.name == name for name, tab in EXPLICIT_TABLEAUS.items())


def test_unknown_method_name_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown method 'dopri6'") as info:
        get_tableau("dopri6")
    assert "dopri5" in str(info.value) and "tsit5" in str(info.value)
    assert isinstance(info.value, InvalidArgumentError)
    with pytest.raises(UnknownNameError):
        get_tableau(None)


# --- a convergence check independent of tree theory --------------------------------------------


def _global_error(tab: ButcherTableau, steps: int, end: float = 2.0) -> float:
    # y' = -2 t y^2, y(0) = 1 has y(t) = 1 / (1 + t^2); non-autonomous, so the nodes c matter.
    h, y = end / steps, 1.0
    for n in range(steps):
        t, k = n * h, []
        for c_i, row in zip(tab.c, tab.a):
            y_i = y + h * sum(a_ij * k_j for a_ij, k_j in zip(row, k))
            k.append(-2 * (t + c_i * h) * y_i**2)
        y += h * sum(b_i * k_i for b_i, k_i in zip(tab.b, k))
    return abs(y - 1 / (1 + end**2))


@pytest.mark.parametrize("name", list(EXPLICIT_TABLEAUS))
def test_global_error_decays_at_least_at_the_claimed_order(name):
    tab = get_tableau(name)
    steps = 16 if tab.order <= 5 else 8  # dopri8 reaches rounding beyond 16 steps
    slope = math.log2(_global_error(tab, steps) / _global_error(tab, 2 * steps))
    assert slope > tab.order - 0.3, f"{name}: observed order {slope:.2f}"


# --- validation and immutability ---------------------------------------------------------------


def _heun_with(**changes) -> ButcherTableau:
    fields = {
        "name": "bad",
        "c": [0.0, 1.0, 1.0],
        "a": [[], [1.0], [0.5, 0.5]],
        "b": [0.5, 0.5, 0.0],
        "order": 2,
        "b_err": [0.5, -0.5, 0.0],
        "error_order": 1,
    }
    return ButcherTableau(**{**fields, **changes})


def test_validation_accepts_the_reference_construction():
    assert _heun_with().fsal


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"c": [0.0, 0.5, 1.0]}, r"row 1 of `a` sums to 1\.0, but c\[1\] = 0\.5"),
        ({"b": [0.5, 0.75, 0.0]}, r"the weights `b` sum to 1\.25, not 1"),
        ({"b_err": [0.5, -0.25, 0.0]}, r"the error weights `b_err` sum to 0\.25, not 0"),
        ({"a": [[], [1.0], [0.5]]}, r"`a` must be strictly lower triangular"),
        ({"b": [0.5, 0.5]}, r"`b` has 2 entries for 3 stages"),
        ({"error_order": None}, r"an embedded error estimate needs `error_order`"),
        (
            {"b_dense": [[1.0, -0.5], [0.0, 0.5], [0.0, 0.1]], "dense_order": 2},
            r"dense output B_2\(1\) = 0\.1 differs from b\[2\]",
        ),
    ],
)
def test_validation_rejects_inconsistent_tableaus(changes, message):
    with pytest.raises(ValueError, match=r"invalid Butcher tableau 'bad': " + message):
        _heun_with(**changes)


def test_hermite_dense_refuses_a_non_fsal_last_stage():
    with pytest.raises(ValueError, match="FSAL"):
        hermite_dense([0.5, 0.5], last_is_f1=False)


@pytest.mark.parametrize("name", list(EXPLICIT_TABLEAUS))
def test_tableaus_are_immutable(name):
    tab = get_tableau(name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tab.b = (1.0,)
    with pytest.raises(TypeError):
        tab.b[0] = 0.0  # stored as tuples, so not even in place
    with pytest.raises(TypeError):
        tab.a[-1][0] = 0.0


def test_inputs_are_copied_so_later_edits_do_not_leak_in():
    b = [0.5, 0.5, 0.0]
    tab = _heun_with(b=b)
    b[0] = 99.0
    assert tab.b == (0.5, 0.5, 0.0)
