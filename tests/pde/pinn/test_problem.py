"""A PINN solves problems with exact solutions, learns an unknown coefficient, adapts its loss
weights as Wang, Teng & Perdikaris (2021) prescribe, and refuses malformed problems clearly."""

import math

import pytest
import torch

from kutta.errors import InvalidArgumentError, SolverError, UnknownNameError
from kutta.pde.pinn import (
    Coefficients,
    DirichletBC,
    GradientNormAnnealing,
    InitialCondition,
    Interval,
    NeumannBC,
    Observations,
    PINNProblem,
    Rectangle,
    SpaceTime,
    fit,
    mlp,
)

F64 = torch.float64
PI = math.pi


def _poisson(**kwargs):
    """u'' = -pi**2 sin(pi x) on [0, 1], u(0) = u(1) = 0; exact u = sin(pi x)."""
    torch.manual_seed(0)
    domain = Interval(0.0, 1.0)
    return PINNProblem(
        mlp(1, 1, hidden=20, depth=2).double(),
        lambda x, u, ops: ops.partial(0, 0) + PI**2 * torch.sin(PI * x[:, 0]),
        domain,
        domain.sample_interior(64, "lhs", seed=0, dtype=F64),
        {"boundary": DirichletBC(domain, torch.tensor([[0.0], [1.0]], dtype=F64), 0.0)},
        **kwargs,
    )


def _relative_error(problem, exact):
    x = torch.linspace(0, 1, 201, dtype=F64)[:, None]
    truth = exact(x)
    return float((problem.predict(x)[:, 0] - truth).norm() / truth.norm())


def test_poisson_is_solved_by_a_short_lbfgs_run():
    problem = _poisson()
    before = _relative_error(problem, lambda x: torch.sin(PI * x[:, 0]))
    history = fit(problem, adam_steps=0, lbfgs_steps=150, log_every=50)
    error = _relative_error(problem, lambda x: torch.sin(PI * x[:, 0]))
    assert before > 0.5 and error < 1e-2
    assert history.lbfgs_iterations == 150 and history.records[-1]["phase"] == "lbfgs"
    assert history.records[-1]["loss/boundary"] < 1e-6


def test_fit_with_adam_then_lbfgs_and_adaptive_weights():
    problem = _poisson(weighting=GradientNormAnnealing(every=5))
    history = fit(problem, adam_steps=100, lr=1e-2, lbfgs_steps=150, log_every=50)
    weights = [r["weight/boundary"] for r in history.records]
    assert weights[0] != 1.0  # adapted during Adam
    assert (
        len({w for r, w in zip(history.records, weights) if r["phase"] == "lbfgs"}) == 1
    )  # frozen
    assert _relative_error(problem, lambda x: torch.sin(PI * x[:, 0])) < 1e-2


@pytest.mark.slow
def test_heat_equation_in_space_time():
    # u_t = u_xx on [0, 1] x [0, 0.5], u(x, 0) = sin(pi x), u = 0 at x = 0, 1:
    # exact u = exp(-pi**2 t) sin(pi x)
    torch.manual_seed(0)
    domain = SpaceTime(Interval(0.0, 1.0), 0.0, 0.5)
    problem = PINNProblem(
        mlp(2, 1, hidden=20, depth=3).double(),
        lambda x, u, ops: ops.partial(1) - ops.partial(0, 0),
        domain,
        domain.sample_interior(200, "sobol", dtype=F64),
        {
            "initial": InitialCondition(
                domain,
                domain.sample_initial(30, "lhs", dtype=F64),
                lambda x: torch.sin(PI * x[:, 0]),
            ),
            "boundary": DirichletBC(domain, domain.sample_boundary(30, "lhs", dtype=F64), 0.0),
        },
    )
    fit(problem, adam_steps=0, lbfgs_steps=400, log_every=100)
    points = domain.sample_interior(1000, seed=5, dtype=F64)
    exact = torch.exp(-(PI**2) * points[:, 1]) * torch.sin(PI * points[:, 0])
    assert float((problem.predict(points)[:, 0] - exact).norm() / exact.norm()) < 3e-2


def test_inverse_problem_recovers_a_coefficient():
    # -k u'' = pi**2 sin(pi x) with observations of u = sin(pi x): k = 1, started at 3
    torch.manual_seed(0)
    domain = Interval(0.0, 1.0)
    coefficients = Coefficients(k=3.0, log_scale=["k"])
    observed = domain.sample_interior(20, "lhs", seed=1, dtype=F64)
    problem = PINNProblem(
        mlp(1, 1, hidden=20, depth=2).double(),
        lambda x, u, ops: coefficients["k"] * ops.partial(0, 0) + PI**2 * torch.sin(PI * x[:, 0]),
        domain,
        domain.sample_interior(64, "lhs", seed=0, dtype=F64),
        {"data": Observations(domain, observed, torch.sin(PI * observed[:, 0]))},
        coefficients=coefficients,
    )
    assert coefficients["k"].dtype == F64  # the coefficients take the points' precision
    history = fit(problem, adam_steps=0, lbfgs_steps=300, log_every=100)
    assert history.records[0]["k"] != 3.0
    assert coefficients.values()["k"] == pytest.approx(1.0, abs=1e-2)


def test_gradient_annealing_follows_the_papers_estimate():
    # losses linear in the parameters, so the gradients are known: grad pde = (4, -8, 2),
    # grad bc = (1, 1, -1): w_hat = max|(4, -8, 2)| / mean|(1, 1, -1)| = 8
    p = torch.zeros(3, dtype=F64, requires_grad=True)
    losses = {
        "pde": p @ torch.tensor([4.0, -8.0, 2.0], dtype=F64),
        "bc": p @ torch.tensor([1.0, 1.0, -1.0], dtype=F64),
    }
    annealing = GradientNormAnnealing({"bc": 2.0}, alpha=0.25, every=2)
    annealing.update(losses, [p])
    assert annealing.weights(["pde", "bc"]) == {"pde": 1.0, "bc": 0.75 * 2.0 + 0.25 * 8.0}
    annealing.update(losses, [p])  # not an update step
    assert annealing.weights(["bc"])["bc"] == 3.5
    annealing.update(losses, [p])
    assert annealing.weights(["bc"])["bc"] == 0.75 * 3.5 + 0.25 * 8.0


def test_gradient_annealing_restored_from_its_state_continues_the_same_schedule():
    # the state holds the count of updates: a copy restored between two update steps makes the
    # next update at the same call as the original (every = 3: calls 1, 4, 7)
    p = torch.zeros(2, dtype=F64, requires_grad=True)
    scale = torch.tensor([3.0, -1.0], dtype=F64)

    def losses():
        return {"pde": (p + 1) @ scale, "bc": p.sum() * (1 + p.sum())}

    original = GradientNormAnnealing(alpha=0.5, every=3)
    for _ in range(2):
        original.update(losses(), [p])
        with torch.no_grad():
            p += 0.1
    restored = GradientNormAnnealing(alpha=0.5, every=3)
    restored.load_state_dict(original.state_dict())
    updated_at = []
    for call in range(3, 9):
        before = original.weights(["bc"])
        original.update(losses(), [p])
        restored.update(losses(), [p])
        assert original.weights(["bc"]) == restored.weights(["bc"])
        if original.weights(["bc"]) != before:
            updated_at.append(call)
        with torch.no_grad():
            p += 0.1
    assert updated_at == [4, 7]
    assert original.state_dict() == restored.state_dict()
    with pytest.raises(InvalidArgumentError, match="'calls'"):
        restored.load_state_dict({"values": {}})


def test_weights_scale_the_terms():
    problem = _poisson(weighting={"boundary": 10.0})
    losses = problem.losses()
    torch.testing.assert_close(problem.loss(), losses["pde"] + 10.0 * losses["boundary"])


def test_malformed_problems_are_rejected():
    domain = Interval(0.0, 1.0)
    net = mlp(1, 1, hidden=4, depth=1).double()
    inside = domain.sample_interior(8, dtype=F64)
    ends = {"boundary": DirichletBC(domain, torch.tensor([[0.0], [1.0]], dtype=F64), 0.0)}

    def good(x, u, ops):
        return ops.partial(0, 0)

    with pytest.raises(
        InvalidArgumentError, match=r"must return shape \(8,\) or \(8, k\).*got \(1,\)"
    ):
        PINNProblem(
            net, lambda x, u, ops: ops.partial(0).sum(0, keepdim=True), domain, inside
        ).losses()
    with pytest.raises(InvalidArgumentError, match="got float"):
        PINNProblem(net, lambda x, u, ops: 0.0, domain, inside).losses()
    with pytest.raises(InvalidArgumentError, match="outside"):
        PINNProblem(net, good, domain, inside + 2)
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 1\)"):
        PINNProblem(net, good, domain, inside[:, 0])
    with pytest.raises(InvalidArgumentError, match="must be a Condition"):
        PINNProblem(net, good, domain, inside, {"boundary": 0.0})
    with pytest.raises(InvalidArgumentError, match="names the PDE term"):
        PINNProblem(net, good, domain, inside, {"pde": ends["boundary"]})
    with pytest.raises(InvalidArgumentError, match=r"unknown loss terms \['bondary'\]"):
        PINNProblem(net, good, domain, inside, ends, weighting={"bondary": 2.0})
    with pytest.raises(InvalidArgumentError, match="float32 but the network is torch.float64"):
        PINNProblem(net, good, domain, inside.float())
    with pytest.raises(InvalidArgumentError, match="reference term"):
        PINNProblem(
            net, good, domain, inside, ends, weighting=GradientNormAnnealing(reference="res")
        )
    with pytest.raises(InvalidArgumentError, match="a function"):
        PINNProblem(net, "u''", domain, inside)
    with pytest.raises(UnknownNameError, match="coefficient 'nu'.*lambda1"):
        Coefficients(lambda1=1.0)["nu"]
    with pytest.raises(InvalidArgumentError, match="start > 0"):
        Coefficients(nu=0.0, log_scale=["nu"])
    with pytest.raises(UnknownNameError, match="activation"):
        mlp(1, 1, activation="relu6")
    problem = PINNProblem(net, good, domain, inside, ends)
    with pytest.raises(InvalidArgumentError, match="lbfgs_steps"):
        fit(problem, lbfgs_steps=-1)


def test_divergence_is_reported_with_the_history_so_far():
    domain = Interval(0.0, 1.0)
    net = mlp(1, 1, hidden=4, depth=1).double()
    problem = PINNProblem(
        net, lambda x, u, ops: u[:, 0] * math.nan, domain, domain.sample_interior(8, dtype=F64)
    )
    with pytest.raises(SolverError, match="diverged in adam at step 1") as info:
        fit(problem, adam_steps=3, log_every=1)
    assert info.value.partial.records == []


@pytest.mark.slow
def test_poisson_on_a_square_with_dirichlet_and_neumann_sides():
    # -laplacian u = 2 pi**2 sin(pi x) cos(pi y) on [0, 1]**2, u = 0 at x = 0, 1 and
    # du/dn = 0 at y = 0, 1: exact u = sin(pi x) cos(pi y)
    torch.manual_seed(0)
    domain = Rectangle([0.0, 0.0], [1.0, 1.0])
    boundary = domain.sample_boundary(160, "lhs", seed=1, dtype=F64)
    on_x_sides = (boundary[:, 0] == 0) | (boundary[:, 0] == 1)

    def exact(x):
        return torch.sin(PI * x[:, 0]) * torch.cos(PI * x[:, 1])

    problem = PINNProblem(
        mlp(2, 1, hidden=20, depth=2).double(),
        lambda x, u, ops: ops.laplacian() + 2 * PI**2 * exact(x),
        domain,
        domain.sample_interior(200, "sobol", seed=0, dtype=F64),
        {
            "dirichlet": DirichletBC(domain, boundary[on_x_sides], 0.0),
            "neumann": NeumannBC(domain, boundary[~on_x_sides], 0.0),
        },
    )
    fit(problem, adam_steps=0, lbfgs_steps=500, log_every=100)
    points = domain.sample_interior(1000, seed=7, dtype=F64)
    truth = exact(points)
    assert float((problem.predict(points)[:, 0] - truth).norm() / truth.norm()) < 2e-2
