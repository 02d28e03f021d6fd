"""Adjoints whose backward solve uses an implicit method (issue 4, "Gradients").

The adjoint equation ``da/ds = -a J`` has the forward Jacobian's eigenvalues, so it is exactly
as stiff as the forward problem: an explicit backward method is held to steps of ~1/|lambda| by
stability, an implicit one is not. Re-solving ``y`` backwards (backsolve) runs its decaying modes
in the unstable direction, so the long stiff horizons below use the interpolated adjoint, and
the backsolve ones stay short (as in torchdiffeq, whose adjoint is backsolve only).
"""

import functools

import pytest
import torch
from torch import nn

import kutta
from kutta.errors import SolverError

DT = torch.float64
IMPLICIT = ["rodas5", "kvaerno5", "bdf"]


class StiffLinear(nn.Module):
    """y' = A(theta) y with eigenvalues near -1 and -1000 (stiffness ratio 1e3)."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([1.0, 2.0, 1000.0], dtype=DT))

    def matrix(self):
        a, b, c = self.theta
        return torch.stack([torch.stack([-a, b]), torch.stack([0.5 * b, -c])])

    def forward(self, t, y):
        return self.matrix() @ y


Y0 = torch.tensor([1.0, 1.0], dtype=DT)
WEIGHTS = torch.tensor([1.0, -3.0], dtype=DT)
T_END = 2.0


@functools.cache
def exact_gradients():
    """dL/d(theta, y0) of L = w . expm(A T) y0, by autograd through the matrix exponential."""
    field = StiffLinear()
    y0 = Y0.clone().requires_grad_(True)
    loss = WEIGHTS @ (torch.linalg.matrix_exp(field.matrix() * T_END) @ y0)
    loss.backward()
    return torch.cat([field.theta.grad, y0.grad])


def solve_gradients(gradient, max_steps=100_000):
    """The gradients of L = w . y(T) by a kutta.solve with this strategy."""
    field = StiffLinear()
    y0 = Y0.clone().requires_grad_(True)
    sol = kutta.solve(
        field,
        y0,
        t_eval=torch.tensor([0.0, T_END], dtype=DT),
        method="rodas5",
        controller=kutta.PIController(rtol=1e-8, atol=1e-10),
        gradient=gradient,
        max_steps=max_steps,
    )
    (WEIGHTS @ sol.ys[-1]).backward()
    return torch.cat([field.theta.grad, y0.grad])


def relative_error(got, want):
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("method", IMPLICIT)
def test_interpolated_adjoint_with_implicit_backward_matches_expm(method):
    exact = exact_gradients()
    # The full norm: with steps far longer than the fast time scale, only the parameter
    # channels' own error estimate resolves the fast transient in their quadrature.
    got = solve_gradients(kutta.InterpolatedAdjoint(method=method, seminorm=False))
    assert relative_error(got, exact) < 1e-5
    assert relative_error(got, backprop_gradients()) < 1e-5


@functools.cache
def backprop_gradients():
    return solve_gradients(kutta.Backprop())


def test_explicit_backward_exhausts_a_budget_that_the_implicit_one_meets():
    # dopri5 is stability-bound at h ~ 3.3 / 1000 over 2 time units: about 600 backward steps;
    # rodas5 needs about 240 (it steps on the forward steps' ends, where the interpolant kinks).
    budget = 300
    got = solve_gradients(kutta.InterpolatedAdjoint(method="rodas5", seminorm=False), budget)
    assert relative_error(got, exact_gradients()) < 1e-5
    with pytest.raises(SolverError, match="backward"):
        solve_gradients(kutta.InterpolatedAdjoint(method="dopri5", seminorm=False), budget)


class Robertson(nn.Module):
    """ROBER (Robertson 1966; IVP Test Set of Bari) with log rate constants as parameters."""

    def __init__(self):
        super().__init__()
        self.log_k = nn.Parameter(torch.tensor([0.04, 3e7, 1e4], dtype=DT).log())

    def forward(self, t, y):
        k1, k2, k3 = self.log_k.exp()
        y1, y2, y3 = y.unbind(-1)
        return torch.stack(
            [-k1 * y1 + k3 * y2 * y3, k1 * y1 - k2 * y2**2 - k3 * y2 * y3, k2 * y2**2], -1
        )


ROBER_T = torch.tensor([0.0, 2e-4, 5e-4, 1e-3], dtype=DT)
ROBER_WEIGHTS = torch.tensor([1.0, 1e4, 0.0], dtype=DT)


def rober_loss(field, y0, solver, **kw):
    ys = solver(field, y0, ROBER_T, method="rodas5", **kw)
    return (ys[1:] * ROBER_WEIGHTS).sum()


def rober_gradients(solver, **kw):
    field = Robertson()
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT, requires_grad=True)
    rober_loss(field, y0, solver, **kw).backward()
    return torch.cat([field.log_k.grad, y0.grad])


@pytest.mark.parametrize("method", IMPLICIT)
@pytest.mark.parametrize("seminorm", [False, True])
def test_odeint_adjoint_with_implicit_backward_matches_backprop(method, seminorm):
    backprop = rober_gradients(kutta.odeint, rtol=1e-10, atol=1e-14)
    got = rober_gradients(
        kutta.odeint_adjoint,
        rtol=1e-6,
        atol=1e-10,
        adjoint_method=method,
        adjoint_options=dict(norm="seminorm") if seminorm else {},
    )
    assert relative_error(got, backprop) < 1e-4


def test_odeint_adjoint_with_implicit_backward_matches_finite_differences():
    got = rober_gradients(kutta.odeint_adjoint, rtol=1e-8, atol=1e-12, adjoint_method="kvaerno5")[
        :3
    ]
    field = Robertson()
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT)
    eps = 1e-6
    finite = []
    with torch.no_grad():
        for i in range(3):
            shifted = []
            for sign in (1.0, -1.0):
                field.log_k[i] += sign * eps
                shifted.append(rober_loss(field, y0, kutta.odeint, rtol=1e-11, atol=1e-15))
                field.log_k[i] -= sign * eps
            finite.append((shifted[0] - shifted[1]) / (2 * eps))
    assert relative_error(got, torch.stack(finite)) < 1e-4


@pytest.mark.parametrize("gradient", [kutta.Adjoint, kutta.InterpolatedAdjoint])
def test_native_adjoint_backward_method_differs_from_forward(gradient):
    def grads(strategy, method):
        field = Robertson()
        y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT, requires_grad=True)
        sol = kutta.solve(
            field,
            y0,
            t_eval=ROBER_T,
            method=method,
            controller=kutta.PIController(rtol=1e-8, atol=1e-12),
            gradient=strategy,
        )
        (sol.ys[1:] * ROBER_WEIGHTS).sum().backward()
        return torch.cat([field.log_k.grad, y0.grad])

    backprop = grads(kutta.Backprop(), "rodas5")
    got = grads(gradient(method="kvaerno5", seminorm=False), "tsit5")
    assert relative_error(got, backprop) < 1e-4


def rober_jacobian(field):
    def jac(t, y):
        k1, k2, k3 = field.log_k.exp()
        y1, y2, y3 = y.unbind(-1)
        zero = torch.zeros_like(y1)
        return torch.stack(
            [
                torch.stack([-k1, k3 * y3, k3 * y2]),
                torch.stack([k1, -2 * k2 * y2 - k3 * y3, -k3 * y2]),
                torch.stack([zero, 2 * k2 * y2, zero]),
            ]
        )

    return jac


@pytest.mark.parametrize("option", ["fwd", "rev", "jac"])
def test_forward_jacobian_options_do_not_leak_into_the_backward_solve(option):
    """A user jac (the forward field's size) and the vmapped Jacobian modes (blind to the
    autograd.grad inside the augmented field) are the forward solve's business only."""
    backprop = rober_gradients(kutta.odeint, rtol=1e-10, atol=1e-14)
    field = Robertson()
    options = {"jac": rober_jacobian(field)} if option == "jac" else {"jacobian": option}
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT, requires_grad=True)
    ys = kutta.odeint_adjoint(
        field, y0, ROBER_T, method="rodas5", rtol=1e-6, atol=1e-10, options=options
    )
    (ys[1:] * ROBER_WEIGHTS).sum().backward()
    assert relative_error(torch.cat([field.log_k.grad, y0.grad]), backprop) < 1e-4
