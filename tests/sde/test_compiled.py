"""The optional compiled SDE steps (``options={"compile": True}``) compute what the eager steps
compute, on the same Brownian path; repeated solves reuse the compiled graphs.

Compiling costs seconds to tens of seconds per graph on CPU, so the tests that compile are few
and marked slow; the option's validation and the eager fallbacks are checked without compiling.
"""

import pytest
import torch

import kutta
import kutta.sde as ksde
from kutta.errors import InvalidArgumentError
from kutta.sde import compiled
from kutta.sde.base import RenamedSDE, SDEView
from kutta.terms import SDETerm

BATCH, D = 4, 3


class MLPSDE(ksde.BaseSDE):
    """A small neural SDE (float64) with a time input; diagonal noise depends on y_i only."""

    def __init__(self, noise_type="diagonal", sde_type="ito"):
        super().__init__(noise_type=noise_type, sde_type=sde_type)
        generator = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(0.5 * torch.randn(D + 1, 8, generator=generator).double())
        self.w2 = torch.nn.Parameter(0.5 * torch.randn(8, D, generator=generator).double())
        self.scale = torch.nn.Parameter(torch.tensor([0.3, 0.2, 0.4], dtype=torch.float64))

    def f(self, t, y):
        inputs = torch.cat([y, t.expand(y.shape[0], 1)], dim=1)
        return torch.tanh(inputs @ self.w1) @ self.w2

    def g(self, t, y):
        diagonal = self.scale * torch.sigmoid(y + t)
        if self.noise_type == "diagonal":
            return diagonal
        return torch.stack([diagonal, 0.5 * diagonal.flip(-1)], dim=-1)  # general: 2 channels


def _bm(channels=D, entropy=0):
    return ksde.BrownianInterval(
        0.0, 1.0, size=(BATCH, channels), dtype=torch.float64, entropy=entropy
    )


Y0 = torch.linspace(-0.5, 0.5, BATCH * D, dtype=torch.float64).view(BATCH, D)
TS = [0.0, 0.3, 1.0]


def test_compile_option_is_validated():
    sde = MLPSDE()
    with pytest.raises(InvalidArgumentError, match="compile"):
        ksde.sdeint(sde, Y0, TS, bm=_bm(), method="euler", dt=0.1, options={"compile": "yes"})
    # a method without a compiled step says which methods have one
    with pytest.raises(
        InvalidArgumentError, match="'compile' is supported by \\['euler', 'reversible_heun'\\]"
    ):
        ksde.sdeint(sde, Y0, TS, method="milstein", dt=0.1, options={"compile": True})
    with pytest.raises(InvalidArgumentError, match="unknown options \\['fast'\\]"):
        ksde.sdeint(sde, Y0, TS, method="euler", dt=0.1, options={"fast": True})


def test_per_solve_wrappers_and_unsupported_adjoints_stay_eager():
    sde = MLPSDE()
    # names=... wraps the SDE anew per solve (a recompile each time): eager step
    assert compiled.compile_target(SDEView(RenamedSDE(sde, {"drift": "f"}))) is None
    assert compiled.compile_target(SDEView(sde)).sde is sde
    params = tuple(sde.parameters())
    assert compiled.adjoint_target(SDEView(sde), params) is not None
    # a tensor that is not the SDE's own parameter cannot be swapped in by functional_call
    assert compiled.adjoint_target(SDEView(sde), (torch.zeros(2, requires_grad=True),)) is None
    # Itô general noise needs the Lévy-area correction, which has no compiled form
    assert compiled.adjoint_target(SDEView(MLPSDE("general")), params) is None


@pytest.mark.slow
@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_compiled_euler_follows_the_eager_path(noise_type):
    sde = MLPSDE(noise_type)
    channels = D if noise_type == "diagonal" else 2
    bm = _bm(channels)
    with torch.no_grad():
        eager = ksde.sdeint(sde, Y0, TS, bm=bm, method="euler", dt=0.05)
        fast = ksde.sdeint(sde, Y0, TS, bm=bm, method="euler", dt=0.05, options={"compile": True})
        assert not torch.equal(eager[-1], Y0)  # the path moved, so the comparison can fail
        # the same arithmetic, fused: round-off apart
        torch.testing.assert_close(fast, eager, rtol=1e-12, atol=1e-12)
        # another path, another SDE instance, other step times: the same graphs
        other_bm, other_sde = _bm(channels, entropy=1), MLPSDE(noise_type)
        with torch.compiler.set_stance("fail_on_recompile"):
            again = ksde.sdeint(
                other_sde,
                Y0,
                [0.0, 0.7],
                bm=other_bm,
                method="euler",
                dt=0.07,
                options={"compile": True},
            )
        reference = ksde.sdeint(other_sde, Y0, [0.0, 0.7], bm=other_bm, method="euler", dt=0.07)
    torch.testing.assert_close(again, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_compiled_euler_chunks_equal_single_compiled_steps(monkeypatch):
    # Without autograd, fixed compiled Euler steps run EULER_CHUNK per graph; each unrolled step
    # does a single compiled step's arithmetic on the same increments: equal bit for bit.
    sde = MLPSDE()
    monkeypatch.setattr(ksde.methods, "EULER_CHUNK", 4)  # small graphs, quick to compile
    ts = [0.0, 0.3, 0.55, 1.0]  # 6, 5 and 9 steps of 0.05: chunks and remainders
    options = {"compile": True}
    compiled._COMPILED.clear()
    with torch.no_grad():  # each solve on a fresh Brownian motion of the same entropy
        chunked = ksde.sdeint(sde, Y0, ts, bm=_bm(), method="euler", dt=0.05, options=options)
        assert any(fn is compiled._euler_steps for fn, _ in compiled._COMPILED)
        with torch.compiler.set_stance("fail_on_recompile"):  # other times, the same graphs
            ksde.sdeint(sde, Y0, [0.0, 0.9], bm=_bm(), method="euler", dt=0.03, options=options)
        monkeypatch.setattr(ksde.methods, "EULER_CHUNK", 10**9)
        single = ksde.sdeint(sde, Y0, ts, bm=_bm(), method="euler", dt=0.05, options=options)
    assert not torch.equal(chunked[-1], Y0)
    assert torch.equal(chunked, single)


@pytest.mark.slow
def test_compiled_euler_backprop_matches_eager_gradients():
    # a solve with gradients: the first step from a state without grad, later ones with
    sde = MLPSDE()
    bm = _bm()

    def gradients(options):
        ys = ksde.sdeint(sde, Y0, TS, bm=bm, method="euler", dt=0.05, options=options)
        return torch.autograd.grad(ys[1:].pow(2).sum(), tuple(sde.parameters()))

    for fast, eager in zip(gradients({"compile": True}), gradients({})):
        torch.testing.assert_close(fast, eager, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sde_type", "method", "options", "adjoint_options"),
    [
        # Itô: the backward step includes the Itô-to-Stratonovich correction (a second derivative)
        ("ito", "euler", {"compile": True}, None),
        ("stratonovich", "midpoint", None, {"compile": True}),
    ],
)
def test_compiled_adjoint_matches_the_eager_adjoint(sde_type, method, options, adjoint_options):
    sde = MLPSDE("diagonal", sde_type)
    bm = _bm()
    y0 = Y0.clone().requires_grad_(True)

    def gradients(options, adjoint_options):
        ys = ksde.sdeint_adjoint(
            sde,
            y0,
            TS,
            bm=bm,
            method=method,
            dt=0.05,
            options=options,
            adjoint_options=adjoint_options,
        )
        return torch.autograd.grad(ys[1:].pow(2).sum(), (y0, *sde.parameters()))

    compiled._COMPILED.clear()  # to see that this solve takes the compiled backward step
    fast = gradients(options, adjoint_options)
    assert any(fn is compiled._adjoint_midpoint_step for fn, _ in compiled._COMPILED)
    with torch.compiler.set_stance("fail_on_recompile"):  # a repeated solve reuses the graphs
        again = gradients(options, adjoint_options)
    for a, b in zip(again, fast):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    eager = gradients(None, None)
    for a, b in zip(fast, eager):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


class MLPField(torch.nn.Module):
    def __init__(self, seed, positive=False):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(0.5 * torch.randn(D, D, generator=generator).double())
        self.positive = positive

    def forward(self, t, y):
        out = torch.tanh(y @ self.w + t)
        return 0.2 * torch.sigmoid(out) if self.positive else out


@pytest.mark.slow
def test_kutta_solve_takes_the_compiled_step_with_its_counts():
    term = SDETerm(MLPField(1), MLPField(2, positive=True), bm=_bm())
    t = torch.tensor(TS, dtype=torch.float64)

    def solve(options):
        method = ksde.SDEMethod("euler", options=options)
        with torch.no_grad():
            return kutta.solve(term, Y0, t, method=method, step_size=0.05)

    eager, fast = solve(None), solve({"compile": True})
    assert fast.stats["nfe"] == eager.stats["nfe"]
    assert fast.stats["n_steps"] == eager.stats["n_steps"] == 20
    torch.testing.assert_close(fast.ys, eager.ys, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_compiled_reversible_heun_adjoint_equals_backprop(noise_type):
    # Kidger et al. (2021): the reversible Heun adjoint recovers the forward states exactly, so
    # its gradients equal backpropagation's to round-off; the compiled steps must keep that.
    sde = MLPSDE(noise_type, "stratonovich")
    bm = _bm(D if noise_type == "diagonal" else 2)
    y0 = Y0.clone().requires_grad_(True)
    inputs = (y0, *sde.parameters())

    def loss(ys):
        return (
            (ys[1:] * torch.linspace(0.5, 1.5, 2, dtype=torch.float64).view(2, 1, 1)).pow(2).sum()
        )

    options = {"compile": True}
    compiled._COMPILED.clear()
    ys_fast = ksde.sdeint_adjoint(
        sde, y0, TS, bm=bm, method="reversible_heun", dt=0.05, options=options
    )
    fast = torch.autograd.grad(loss(ys_fast), inputs)
    used = {fn for fn, _ in compiled._COMPILED}
    assert used == {compiled._reversible_heun_step, compiled._reversible_heun_back}
    ys = ksde.sdeint(sde, y0, TS, bm=bm, method="reversible_heun", dt=0.05)
    backprop = torch.autograd.grad(loss(ys), inputs)
    torch.testing.assert_close(ys_fast, ys, rtol=1e-12, atol=1e-12)
    for a, b in zip(fast, backprop):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # sdeint's own reversible Heun step takes the same compiled step
    with torch.no_grad():
        solved = ksde.sdeint(sde, Y0, TS, bm=bm, method="reversible_heun", dt=0.05, options=options)
    torch.testing.assert_close(solved, ys.detach(), rtol=1e-12, atol=1e-12)


class CountingSDE(MLPSDE):
    """Counts its drift evaluations in an integer attribute (``self.nfe += 1``), which dynamo
    would bake into the graph, a recompile per step, unless kutta's steps are traced with
    ``allow_unspec_int_on_nn_module``."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def f(self, t, y):
        self.nfe += 1
        return super().f(t, y)


@pytest.mark.slow
@pytest.mark.parametrize("preset", [False, True])
def test_compiled_steps_leave_the_users_dynamo_setting_alone(preset, caplog):
    # kutta traces its steps with integer module attributes as inputs; the process's setting,
    # which governs torch.compile of the user's own code, must stay what the user chose.
    sde = type(f"CountingSDE{preset}", (CountingSDE,), {})()  # graphs of its own
    options = {"compile": True}
    with (
        torch._dynamo.config.patch(allow_unspec_int_on_nn_module=preset),
        torch.no_grad(),
        caplog.at_level("WARNING", logger="torch._dynamo"),
    ):
        ksde.sdeint(sde, Y0, [0.0, 1.0], bm=_bm(), method="euler", dt=1 / 32, options=options)
        assert torch._dynamo.config.allow_unspec_int_on_nn_module is preset
        # were the counter a constant of the graphs, each chunk of steps would recompile
        with torch.compiler.set_stance("fail_on_recompile"):
            fast = ksde.sdeint(
                sde, Y0, [0.0, 1.0], bm=_bm(), method="euler", dt=1 / 32, options=options
            )
        assert torch._dynamo.config.allow_unspec_int_on_nn_module is preset
    assert "recompile_limit" not in caplog.text
    eager_sde = CountingSDE()
    with torch.no_grad():
        eager = ksde.sdeint(eager_sde, Y0, [0.0, 1.0], bm=_bm(), method="euler", dt=1 / 32)
    # a drift evaluation per step (and sdeint's check of the SDE's shapes), counted in the graphs
    assert sde.nfe == 2 * eager_sde.nfe and eager_sde.nfe > 32
    torch.testing.assert_close(fast, eager, rtol=1e-12, atol=1e-12)
