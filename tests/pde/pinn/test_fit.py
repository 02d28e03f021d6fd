"""L-BFGS in pieces: stepping one iteration at a time is the same computation as one long call."""

import math

import torch

from kutta.pde.pinn import DirichletBC, Interval, PINNProblem, fit, mlp
from kutta.pde.pinn.fit import LBFGSStepper


def _poisson():
    torch.manual_seed(0)
    domain = Interval(0.0, 1.0)
    return PINNProblem(
        mlp(1, 1, hidden=20, depth=2).double(),
        lambda x, u, ops: ops.partial(0, 0) + math.pi**2 * torch.sin(math.pi * x[:, 0]),
        domain,
        domain.sample_interior(64, "lhs", seed=0, dtype=torch.float64),
        {"boundary": DirichletBC(domain, torch.tensor([[0.0], [1.0]], dtype=torch.float64), 0.0)},
    )


def test_one_iteration_at_a_time_matches_one_call_bitwise_with_no_extra_evaluations():
    whole, pieces = _poisson(), _poisson()
    at_once = LBFGSStepper(whole)
    iterations = at_once.step(25)
    assert iterations > 15
    one_by_one = LBFGSStepper(pieces)
    for _ in range(iterations):
        assert one_by_one.step(1) == 1
    assert one_by_one.iterations == iterations
    # torch's LBFGS re-evaluates the loss at the start of every call; the remembered evaluation
    # makes that free, so the count of loss evaluations is the same
    assert one_by_one.evaluations == at_once.evaluations
    for a, b in zip(whole.parameters(), pieces.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(one_by_one.last_loss, at_once.last_loss)


def test_fit_logs_both_phases_and_lbfgs_lowers_the_loss():
    problem = _poisson()
    history = fit(problem, adam_steps=40, lr=1e-2, lbfgs_steps=60, log_every=20)
    phases = [r["phase"] for r in history.records]
    assert phases == ["adam"] * 2 + ["lbfgs"] * 3
    assert [r["step"] for r in history.records] == [20, 40, 60, 80, 100]
    assert history.records[-1]["loss"] < 1e-2 * history.records[1]["loss"]
    assert history.adam_steps == 40 and history.lbfgs_iterations == 60
    assert history.adam_time_s > 0 and history.lbfgs_time_s > 0
