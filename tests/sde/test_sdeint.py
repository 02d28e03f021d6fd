"""sdeint's contract: torchsde's signature and returns, every method on every noise type it
supports, adaptive stepping, and clear errors for bad input."""

import functools

import pytest
import torch

import kutta.sde as ksde
from kutta.errors import InvalidArgumentError, UnknownNameError


class Linear(ksde.BaseSDE):
    """dY = a Y dt + G(Y) dW, with G shaped for the declared noise type."""

    def __init__(self, noise_type, sde_type="ito", d=3, m=2):
        super().__init__(noise_type=noise_type, sde_type=sde_type)
        self.d, self.m = d, m
        self.a = torch.nn.Parameter(torch.tensor(-0.5, dtype=torch.float64))
        self.b = torch.nn.Parameter(torch.tensor(0.3, dtype=torch.float64))

    def f(self, t, y):
        return self.a * y + torch.sin(t) * 0.1

    def g(self, t, y):
        if self.noise_type == "diagonal":
            return self.b * torch.cos(y)
        if self.noise_type == "scalar":
            return (self.b * torch.cos(y)).unsqueeze(-1)
        if self.noise_type == "additive":
            return self.b * torch.ones(y.shape[0], self.d, self.m, dtype=y.dtype)
        # general: column k depends on y
        cols = [self.b * torch.cos(y + k) for k in range(self.m)]
        return torch.stack(cols, dim=-1)

    def h(self, t, y):
        return -y


def _noise_size(noise_type, d=3, m=2):
    return {"diagonal": d, "scalar": 1, "additive": m, "general": m}[noise_type]


SUPPORT = {
    ("ito", "euler"): ("diagonal", "scalar", "additive", "general"),
    ("ito", "milstein"): ("diagonal", "scalar", "additive"),
    ("ito", "srk"): ("diagonal", "scalar", "additive"),
    ("stratonovich", "euler_heun"): ("diagonal", "scalar", "additive", "general"),
    ("stratonovich", "heun"): ("diagonal", "scalar", "additive", "general"),
    ("stratonovich", "midpoint"): ("diagonal", "scalar", "additive", "general"),
    ("stratonovich", "milstein"): ("diagonal", "scalar", "additive"),
    ("stratonovich", "reversible_heun"): ("diagonal", "scalar", "additive", "general"),
    ("stratonovich", "log_ode"): ("diagonal", "scalar", "additive", "general"),
}


def _path(noise_type, levy):
    return ksde.BrownianInterval(
        0.0,
        1.0,
        size=(16, _noise_size(noise_type)),
        dtype=torch.float64,
        entropy=3,
        levy_area_approximation=levy,
    )


@functools.cache
def _references(sde_type, noise_type):
    """Reference solution (dt = 2^-11) and the reference method's own result at dt = 2^-7."""
    method = "euler" if sde_type == "ito" else "midpoint"
    y0 = torch.full((16, 3), 0.5, dtype=torch.float64)
    with torch.no_grad():
        fine = ksde.sdeint(
            Linear(noise_type, sde_type),
            y0,
            [0.0, 1.0],
            bm=_path(noise_type, "foster"),
            method=method,
            dt=2.0**-11,
        )
        coarse = ksde.sdeint(
            Linear(noise_type, sde_type),
            y0,
            [0.0, 1.0],
            bm=_path(noise_type, "foster"),
            method=method,
            dt=2.0**-7,
        )
    return fine[-1], coarse[-1]


@pytest.mark.parametrize(("sde_type", "method"), list(SUPPORT))
def test_every_method_converges_to_the_same_solution(sde_type, method):
    # Each method at dt = 2^-7 agrees with a low-order reference method at dt = 2^-11 on the same
    # path, within that method's own error at 2^-7: catches wrong noise products and stage times.
    # (The Brownian interval with the same entropy and query pattern gives the same path.)
    for noise_type in SUPPORT[(sde_type, method)]:
        reference, low_order = _references(sde_type, noise_type)
        y0 = torch.full((16, 3), 0.5, dtype=torch.float64)
        with torch.no_grad():
            ys = ksde.sdeint(
                Linear(noise_type, sde_type),
                y0,
                [0.0, 0.5, 1.0],
                bm=_path(noise_type, "foster"),
                method=method,
                dt=2.0**-7,
            )
        assert ys.shape == (3, 16, 3)
        error = (ys[-1] - reference).abs().mean()
        assert error < max(1.5 * (low_order - reference).abs().mean(), 2e-3), (method, noise_type)
        assert error < 0.02, (method, noise_type)


def test_defaults_and_return_values_follow_torchsde():
    sde = Linear("diagonal")
    y0 = torch.full((4, 3), 0.5, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    ys = ksde.sdeint(sde, y0, ts, dt=0.05)  # default: srk with a space-time Brownian interval
    assert ys.shape == (5, 4, 3)
    assert torch.equal(ys[0], y0)
    ys, extra = ksde.sdeint(
        Linear("general", "stratonovich"), y0, ts, method="reversible_heun", dt=0.05, extra=True
    )
    z, f, g = extra
    assert z.shape == (4, 3) and f.shape == (4, 3) and g.shape == (4, 3, 2)
    ys, log_ratio = ksde.sdeint(sde, y0, ts, method="euler", dt=0.05, logqp=True)
    assert ys.shape == (5, 4, 3) and log_ratio.shape == (4, 4)
    assert (log_ratio >= 0).all()
    assert set(ksde.METHODS) >= {"euler", "milstein", "srk", "reversible_heun", "log_ode"}
    assert ksde.METHODS.log_ode_midpoint == "log_ode"
    assert ksde.LEVY_AREA_APPROXIMATIONS.space_time == "space-time"
    assert "general" in ksde.NOISE_TYPES and "ito" in ksde.SDE_TYPES


def test_names_maps_drift_and_diffusion():
    class Renamed(ksde.SDEIto):
        def __init__(self):
            super().__init__(noise_type="diagonal")

        def drift(self, t, y):
            return -y

        def diffusion(self, t, y):
            return 0.1 * torch.ones_like(y)

    y0 = torch.ones(2, 1)
    bm = ksde.BrownianInterval(0.0, 1.0, size=(2, 1), entropy=0)
    ys = ksde.sdeint(
        Renamed(),
        y0,
        [0.0, 1.0],
        bm=bm,
        method="euler",
        dt=0.1,
        names={"drift": "drift", "diffusion": "diffusion"},
    )
    assert ys.shape == (2, 2, 1)


def test_same_path_same_result_and_ts_independent_of_the_grid():
    sde = Linear("diagonal")
    y0 = torch.full((8, 3), 0.5, dtype=torch.float64)
    bm = ksde.BrownianInterval(0.0, 1.0, size=(8, 3), dtype=torch.float64, entropy=1)
    with torch.no_grad():
        coarse = ksde.sdeint(sde, y0, [0.0, 1.0], bm=bm, method="euler", dt=0.125)
        fine_grid = ksde.sdeint(sde, y0, [0.0, 0.25, 0.5, 1.0], bm=bm, method="euler", dt=0.125)
    torch.testing.assert_close(coarse[-1], fine_grid[-1])


def test_adaptive_stepping_meets_tolerance_and_rejects_steps():
    class Stiffish(ksde.SDEIto):
        def __init__(self):
            super().__init__(noise_type="additive")

        def f(self, t, y):
            return -20 * (y - torch.sin(5 * t))

        def g(self, t, y):
            return 0.05 * torch.ones(y.shape[0], 1, 1, dtype=y.dtype)

    y0 = torch.zeros(16, 1, dtype=torch.float64)
    bm = ksde.BrownianInterval(
        0.0, 2.0, size=(16, 1), dtype=torch.float64, entropy=2, levy_area_approximation="space-time"
    )
    with torch.no_grad():
        reference = ksde.sdeint(Stiffish(), y0, [0.0, 2.0], bm=bm, method="srk", dt=2.0**-11)
        from kutta.sde.base import SDEView
        from kutta.sde.loop import LoopStats, integrate
        from kutta.sde.methods import SRK

        stats = LoopStats()
        ys, _ = integrate(
            SRK(SDEView(Stiffish()), bm, {}), y0, [0.0, 2.0], (), 0.5, True, 1e-4, 1e-4, 1e-5, stats
        )
    assert stats.rejected > 0
    assert stats.accepted < 2**11 / 4
    assert (ys[-1] - reference[-1]).abs().max() < 1e-3
    with torch.no_grad():
        public = ksde.sdeint(
            Stiffish(),
            y0,
            [0.0, 2.0],
            bm=bm,
            method="srk",
            dt=0.5,
            adaptive=True,
            rtol=1e-4,
            atol=1e-4,
        )
    torch.testing.assert_close(public[-1], ys[-1])


def _bad(**overrides):
    sde = overrides.pop("sde", Linear("diagonal"))
    args = {
        "y0": torch.full((4, 3), 0.5, dtype=torch.float64),
        "ts": [0.0, 1.0],
        "dt": 0.1,
        "method": "euler",
    }
    args.update(overrides)
    return ksde.sdeint(sde, **args)


class WrongShape(Linear):
    def __init__(self, noise_type, g_shape):
        super().__init__(noise_type)
        self.g_shape = g_shape

    def g(self, t, y):
        return torch.ones(self.g_shape, dtype=y.dtype)


@pytest.mark.parametrize(
    ("noise_type", "g_shape", "message"),
    [
        ("diagonal", (4, 3, 1), "diagonal noise must have shape"),
        ("general", (4, 3), "general noise must have shape"),
        ("additive", (4, 2, 2), "additive noise must have shape"),
        ("scalar", (4, 3, 2), "scalar noise needs"),
    ],
)
def test_wrong_noise_shapes_are_named(noise_type, g_shape, message):
    with pytest.raises(InvalidArgumentError, match=message):
        _bad(sde=WrongShape(noise_type, g_shape))


def test_unsupported_method_names_the_methods_that_work():
    with pytest.raises(
        InvalidArgumentError, match=r"does not support ito SDEs with general noise.*\['euler'\]"
    ):
        _bad(sde=Linear("general"), method="srk")
    with pytest.raises(InvalidArgumentError, match=r"does not support ito SDEs.*'srk'"):
        _bad(method="midpoint")
    with pytest.raises(UnknownNameError, match="valid methods are"):
        _bad(method="rk45")
    with pytest.raises(InvalidArgumentError, match="unknown options"):
        _bad(options={"gradfree": True}, method="milstein")


def test_bad_times_steps_and_brownian_motions_are_named():
    with pytest.raises(InvalidArgumentError, match="dt must be > 0"):
        _bad(dt=0.0)
    with pytest.raises(InvalidArgumentError, match="dt must be > 0"):
        _bad(dt=-0.1)
    with pytest.raises(InvalidArgumentError, match="strictly increasing"):
        _bad(ts=[0.0, 0.5, 0.5])
    with pytest.raises(InvalidArgumentError, match="strictly increasing"):
        _bad(ts=[1.0, 0.0])
    bm = ksde.BrownianInterval(0.0, 0.5, size=(4, 3), dtype=torch.float64)
    with pytest.raises(InvalidArgumentError, match="outside the Brownian motion's span"):
        _bad(bm=bm)
    with pytest.raises(InvalidArgumentError, match="levy_area_approximation"):
        _bad(bm=ksde.BrownianInterval(0.0, 1.0, size=(4, 3), dtype=torch.float64), method="srk")
    with pytest.raises(InvalidArgumentError, match="bm must have shape"):
        _bad(bm=ksde.BrownianInterval(0.0, 1.0, size=(4, 2), dtype=torch.float64))
    with pytest.raises(InvalidArgumentError, match="y0 must be a tensor of shape"):
        _bad(y0=torch.zeros(3))
    with pytest.raises(InvalidArgumentError, match="prior drift"):

        class NoPrior(ksde.SDEIto):
            def __init__(self):
                super().__init__(noise_type="diagonal")

            def f(self, t, y):
                return y

            def g(self, t, y):
                return y

        _bad(sde=NoPrior(), logqp=True)
    with pytest.raises(InvalidArgumentError, match="noise_type must be one of"):
        ksde.SDEIto(noise_type="diag")


def test_torchsde_style_code_runs_unchanged():
    import kutta.sde as torchsde

    class SDE(torch.nn.Module):
        noise_type = "general"
        sde_type = "ito"

        def __init__(self):
            super().__init__()
            self.mu = torch.nn.Linear(3, 3)
            self.sigma = torch.nn.Linear(3, 3 * 2)

        def f(self, t, y):
            return self.mu(y)

        def g(self, t, y):
            return self.sigma(y).view(y.shape[0], 3, 2)

    sde = SDE()
    y0 = torch.full((5, 3), 0.1)
    ts = torch.linspace(0, 1, 20)
    ys = torchsde.sdeint(sde, y0, ts)
    assert ys.shape == (20, 5, 3)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=(5, 2), device=y0.device, dtype=y0.dtype)
    ys = torchsde.sdeint_adjoint(
        sde, y0, ts, bm=bm, method="euler", adjoint_method="midpoint", dt=0.05
    )
    ys.sum().backward()
    assert sde.mu.weight.grad is not None and torch.isfinite(sde.mu.weight.grad).all()
    tree = torchsde.BrownianTree(t0=0.0, w0=torch.zeros(5, 2), t1=1.0)
    assert torchsde.sdeint(sde, y0, ts, bm=tree, method="euler", dt=0.05).shape == (20, 5, 3)


def test_milstein_with_constant_diagonal_noise_reduces_to_euler():
    class Constant(ksde.SDEIto):
        def __init__(self):
            super().__init__(noise_type="diagonal")

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return torch.full_like(y, 0.3)

    y0 = torch.ones(4, 2, dtype=torch.float64)
    bm = ksde.BrownianInterval(0.0, 1.0, size=(4, 2), dtype=torch.float64, entropy=0)
    milstein = ksde.sdeint(Constant(), y0, [0.0, 1.0], bm=bm, method="milstein", dt=0.1)
    euler = ksde.sdeint(Constant(), y0, [0.0, 1.0], bm=bm, method="euler", dt=0.1)
    torch.testing.assert_close(milstein, euler)


class _RecordingBrownian:
    """A BrownianInterval that records its queries (to check the order a solve makes them in)."""

    def __init__(self, **kwargs):
        self.bm = ksde.BrownianInterval(**kwargs)
        self.queries = []

    def __call__(self, ta, tb=None, **flags):
        self.queries.append((ta, tb, tuple(sorted(flags.items()))))
        return self.bm(ta, tb, **flags)

    def __getattr__(self, name):
        return getattr(self.bm, name)


@pytest.mark.parametrize(
    ("method", "levy", "flags"),
    [("euler", "none", ()), ("srk", "space-time", (("return_U", True),))],
)
def test_fixed_steps_query_the_brownian_motion_ahead_in_step_order(method, levy, flags):
    # Fixed steps draw their increments a chunk ahead (kutta.sde.loop.PrefetchedBrownian): the
    # same queries in the same order as step by step, so the same path bit for bit (a
    # BrownianInterval's values depend on the order its tree is split in).
    y0 = torch.full((2, 3), 0.5, dtype=torch.float64)
    kwargs = dict(t0=0.0, t1=1.0, size=(2, 3), dtype=torch.float64, entropy=5)
    kwargs["levy_area_approximation"] = levy
    bm = _RecordingBrownian(**kwargs)
    queried_before_drift = []

    class Watched(Linear):
        def f(self, t, y):
            queried_before_drift.append(len(bm.queries))
            return super().f(t, y)

    sde = Watched("diagonal")
    ts = [0.0, 0.375, 1.0]
    with torch.no_grad():
        ys = ksde.sdeint(sde, y0, ts, bm=bm, method=method, dt=0.01)
    grid = ksde.loop.step_grid(ts, 0.01)[0]
    assert len(grid) == 102  # 38 + 63 steps, each output reached by a shortened step
    assert bm.queries == [(a, b, flags) for a, b in zip(grid[:-1], grid[1:])]
    # queried 64 steps ahead: the first step's drift (after the shape check's) sees 64 queries
    assert queried_before_drift[:2] == [0, 64]
    # step by step, on a fresh Brownian motion of the same entropy: the same values
    fresh = ksde.BrownianInterval(**kwargs)
    stepper = ksde.methods.METHOD_CLASSES["ito"][method](ksde.base.SDEView(sde), fresh, {})
    y = y0
    with torch.no_grad():
        for a, b in zip(grid[:-1], grid[1:]):
            y, _ = stepper.step(a, b, y, ())
    assert torch.equal(ys[-1], y)
