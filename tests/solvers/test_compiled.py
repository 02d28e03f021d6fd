"""The optional torch.compile-d explicit step computes what the eager step computes.

Compiling costs tens of seconds per graph on CPU, so these tests are few and marked slow; each
one compiles for one tableau, direction, grad mode and input shape.
"""

import math

import pytest
import torch

import kutta
from kutta.solvers import compiled
from kutta.solvers.implicit import IMPLICIT_METHODS

pytestmark = pytest.mark.slow


class Linear(torch.nn.Module):
    """y' = A y + sin(t), with A fixed: a field with an explicit time dependence."""

    def __init__(self):
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=torch.float64))

    def forward(self, t, y):
        return y @ self.A.T + torch.sin(t)


@pytest.mark.parametrize("reverse", [False, True])
def test_compiled_solve_matches_eager_steps_and_values(reverse):
    field = Linear()
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 3.0, 5, dtype=torch.float64)
    if reverse:
        t = t.flip(0)
    with torch.no_grad():
        eager = kutta.solve(field, y0, t, method=kutta.Dopri5())
        fast = kutta.solve(field, y0, t, method=kutta.Dopri5(compile=True))
    assert fast.stats["n_accepted"] == eager.stats["n_accepted"]
    assert fast.stats["nfe"] == eager.stats["nfe"]
    # the same arithmetic in a different association order: round-off apart
    torch.testing.assert_close(fast.ys, eager.ys, rtol=1e-12, atol=1e-12)


def test_compiled_backprop_matches_eager_gradients():
    field = Linear()
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)

    def grads(options):
        out = kutta.odeint(field, y0, t, method="tsit5", options=options)
        loss = out.pow(2).sum()
        return torch.autograd.grad(loss, (y0, field.A))

    for g_fast, g_eager in zip(grads({"compile": True}), grads({})):
        torch.testing.assert_close(g_fast, g_eager, rtol=1e-10, atol=1e-12)


def test_compiled_solve_is_accurate_on_an_exact_solution():
    # y' = -y: the compiled path must be a correct solver, not just agree with the eager one
    y0 = torch.ones(3, dtype=torch.float64)
    out = kutta.odeint(
        lambda t, y: -y,
        y0,
        torch.tensor([0.0, 2.0], dtype=torch.float64),
        method="dopri5",
        rtol=1e-10,
        atol=1e-12,
        options={"compile": True},
    )
    assert abs(float(out[-1, 0]) - math.exp(-2.0)) < 1e-8


def test_tuple_states_fall_back_to_the_eager_step():
    # the wrapper for tuple states is made per solve, so it has no compile target
    y0 = (torch.ones(2, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    before = dict(compiled._CACHE)
    out = kutta.odeint(
        lambda t, y: (-y[0], y[0][:1]), y0, t, method="dopri5", options={"compile": True}
    )
    assert set(compiled._CACHE) == set(before)
    torch.testing.assert_close(out[0][-1], torch.full((2,), math.exp(-1.0), dtype=torch.float64))


def _max_norm(x):
    return x.abs().max()


def test_compiled_step_uses_the_controllers_norm_and_per_component_tolerances():
    # The compiled step computes the error norm inside its graph; it must be the controller's
    # (here a user norm and per-component atol), or step counts would differ from the eager step.
    field = Linear()
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 4.0], dtype=torch.float64)
    atol = torch.tensor([[1e-9, 1e-6]], dtype=torch.float64)

    def steps(compile, norm):
        options = {"compile": compile, "norm": norm}
        with torch.no_grad():
            sol = kutta.odeint(field, y0, t, rtol=1e-7, atol=atol, method="dopri5", options=options)
        counter = {"n": 0}

        def counting(tt, y):
            counter["n"] += 1
            return field(tt, y)

        with torch.no_grad():
            kutta.odeint(
                counting, y0, t, rtol=1e-7, atol=atol, method="dopri5", options={"norm": norm}
            )
        return sol, counter["n"]

    eager_max, nfe_max = steps(False, _max_norm)
    fast_max, _ = steps(True, _max_norm)
    _, nfe_rms = steps(False, None)
    assert nfe_max != nfe_rms  # the norm matters on this problem, so the comparison can fail
    torch.testing.assert_close(fast_max, eager_max, rtol=1e-12, atol=1e-12)


def test_new_tolerances_reuse_the_compiled_step():
    # tolerances enter the graph as tensors, so a tolerance sweep does not recompile
    field = Linear()
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        kutta.odeint(field, y0, t, rtol=1e-6, atol=1e-8, method="bosh3", options={"compile": True})
        with torch.compiler.set_stance("fail_on_recompile"):
            out = kutta.odeint(
                field, y0, t, rtol=1e-9, atol=1e-11, method="bosh3", options={"compile": True}
            )
    exact = kutta.odeint(field, y0, t, rtol=1e-12, atol=1e-14, method="dopri8")
    torch.testing.assert_close(out, exact, rtol=1e-7, atol=1e-8)


def test_grad_modes_and_fields_stay_under_the_recompile_limit(caplog):
    # Three fields, each solved without and with gradients, are 9 graphs of one tableau; past
    # torch's limit of 8 graphs per function the step would silently run eagerly. A solve with
    # gradients takes two graphs (a first step from a state without grad), so grad modes get
    # functions of their own.
    # distinct classes: instances of one module class share graphs (parameters are inputs)
    fields = [type(f"Linear{i}", (Linear,), {})() for i in range(3)]
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5], dtype=torch.float64)
    with caplog.at_level("WARNING", logger="torch._dynamo"):
        for field in fields:
            with torch.no_grad():
                kutta.odeint(field, y0, t, method="bosh3", options={"compile": True})
            out = kutta.odeint(field, y0, t, method="bosh3", options={"compile": True})
            out.sum().backward()
    assert "recompile_limit" not in caplog.text
    keys = {(key[2]) for key in compiled._CACHE if key[0].name == "bosh3"}
    assert keys == set(compiled.GradMode)
    assert all(f.A.grad is not None for f in fields)


class CountingLinear(Linear):
    """Counts its own calls, as torchdiffeq's examples do: an integer attribute that changes at
    every call, which dynamo would bake into the graph (a recompile per step) unless kutta's
    steps are traced with ``allow_unspec_int_on_nn_module``."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return super().forward(t, y)


@pytest.mark.parametrize("preset", [False, True])
def test_compiled_steps_leave_the_users_dynamo_setting_alone(preset, caplog):
    # kutta traces its steps with integer module attributes as inputs; the process's setting,
    # which governs torch.compile of the user's own code, must stay what the user chose.
    field = type(f"CountingLinear{preset}", (CountingLinear,), {})()  # graphs of its own
    y0 = torch.tensor([[1.0, 0.0], [0.5, -1.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    with (
        torch._dynamo.config.patch(allow_unspec_int_on_nn_module=preset),
        torch.no_grad(),
        caplog.at_level("WARNING", logger="torch._dynamo"),
    ):
        first = kutta.solve(field, y0, t, method=kutta.Fehlberg2(compile=True))
        assert torch._dynamo.config.allow_unspec_int_on_nn_module is preset
        with torch.compiler.set_stance("fail_on_recompile"):
            sol = kutta.solve(field, y0, t, method=kutta.Fehlberg2(compile=True))
        assert torch._dynamo.config.allow_unspec_int_on_nn_module is preset
    # were the counter a constant of the graph, every step would recompile until dynamo gave up
    # and ran the step eagerly
    assert "recompile_limit" not in caplog.text
    assert sol.stats["n_accepted"] > 10  # many steps through the same graph
    # the graph updates the field's own counter
    assert field.nfe == first.stats["nfe"] + sol.stats["nfe"]
    eager = kutta.solve(Linear(), y0, t, method=kutta.Fehlberg2())
    torch.testing.assert_close(sol.ys, eager.ys, rtol=1e-12, atol=1e-12)


def test_compiled_implicit_steps_leave_the_users_dynamo_setting_alone(caplog):
    # the implicit methods' compiled steps are made by the same compile_step
    field = CountingLinear()
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with (
        torch._dynamo.config.patch(allow_unspec_int_on_nn_module=False),
        torch.no_grad(),
        caplog.at_level("WARNING", logger="torch._dynamo"),
    ):
        kutta.solve(field, y0, t, method=IMPLICIT_METHODS["rosenbrock23"](compile=True))
        assert not torch._dynamo.config.allow_unspec_int_on_nn_module
        with torch.compiler.set_stance("fail_on_recompile"):
            sol = kutta.solve(field, y0, t, method=IMPLICIT_METHODS["rosenbrock23"](compile=True))
        assert not torch._dynamo.config.allow_unspec_int_on_nn_module
    assert "recompile_limit" not in caplog.text
    assert sol.stats["n_accepted"] > 10
    eager = kutta.solve(Linear(), y0, t, method=IMPLICIT_METHODS["rosenbrock23"]())
    torch.testing.assert_close(sol.ys, eager.ys, rtol=1e-10, atol=1e-12)
