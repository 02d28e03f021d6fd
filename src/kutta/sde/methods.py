"""One-step SDE methods. Each method is a small class: ``init(t0, y0) -> extra`` and
``step(t0, t1, y, extra) -> (y1, extra)``, with its supported SDE and noise types as data.

Stochastic Runge–Kutta methods take their coefficients from tableaus (``SRITableau``/``SRATableau``)
and share one step per family.

Example:
    >>> method = METHOD_CLASSES["euler"](SDEView(sde), bm, options={})  # doctest: +SKIP
    >>> y1, extra = method.step(0.0, 0.01, y0, method.init(0.0, y0))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from kutta.errors import InvalidArgumentError
from kutta.sde.base import SDEView
from kutta.sde.compiled import (
    COMPILE,
    EULER_CHUNK,
    check_compile_option,
    compile_target,
    euler_step,
    euler_steps,
    reversible_heun_step,
)
from kutta.sde.settings import (
    LEVY_AREA_APPROXIMATIONS,
    METHOD_OPTIONS,
    METHODS,
    NOISE_TYPES,
    SDE_TYPES,
)

_ALL_NOISE = (NOISE_TYPES.diagonal, NOISE_TYPES.additive, NOISE_TYPES.scalar, NOISE_TYPES.general)
_ANY_LEVY = tuple(LEVY_AREA_APPROXIMATIONS.all())
_WITH_H = (
    LEVY_AREA_APPROXIMATIONS.space_time,
    LEVY_AREA_APPROXIMATIONS.davie,
    LEVY_AREA_APPROXIMATIONS.foster,
)
_WITH_A = (LEVY_AREA_APPROXIMATIONS.davie, LEVY_AREA_APPROXIMATIONS.foster)


class Method:
    """A one-step method for ``dY = f dt + g dW`` (Itô) or ``g ∘ dW`` (Stratonovich)."""

    name: str
    sde_type: str
    noise_types: tuple[str, ...] = _ALL_NOISE
    levy_area_approximations: tuple[str, ...] = _ANY_LEVY
    strong_order: float
    weak_order: float
    options: tuple[str, ...] = ()
    compilable = False  # whether options={"compile": True} gives a compiled step
    # A step queries the Brownian motion once, over [t0, t1], with these keyword arguments
    # (None: other queries), so a fixed-step solve may query it ahead (loop.PrefetchedBrownian).
    brownian_query: dict | None = {}

    def __init__(self, sde: SDEView, bm, options: dict):
        valid_options = (*self.options, COMPILE) if self.compilable else self.options
        unknown = sorted(set(options) - set(valid_options))
        if unknown:
            valid = list(valid_options) or "none"
            hint = (
                f" ('compile' is supported by {compiled_methods()})" if COMPILE in unknown else ""
            )
            raise InvalidArgumentError(
                f"method {self.name!r} got unknown options {unknown}; valid: {valid}{hint}"
            )
        self.sde, self.bm, self.opts = sde, bm, options
        # The compiled step's target; None for an eager step (not asked for, or an SDE wrapper
        # that would recompile every solve: see kutta.sde.compiled).
        self.compiled = None
        if check_compile_option(options.get(COMPILE, False)):
            self.compiled = compile_target(sde)

    def time(self, t: float, like: torch.Tensor) -> torch.Tensor:
        # scalar_tensor: the value of torch.tensor(t, ...), in about half the time
        return torch.scalar_tensor(t, dtype=like.dtype, device=like.device)

    def init(self, t0: float, y0: torch.Tensor) -> tuple:
        return ()

    def step(self, t0: float, t1: float, y: torch.Tensor, extra: tuple):
        raise NotImplementedError

    def steps(self, intervals: list[tuple[float, float]], y: torch.Tensor, extra: tuple):
        """Consecutive steps over ``intervals`` (``(t0, t1)`` pairs); the state after the last."""
        step = self.step
        for t0, t1 in intervals:
            y, extra = step(t0, t1, y, extra)
        return y, extra


class Euler(Method):
    """Euler–Maruyama: strong order 0.5 (1.0 for additive noise), weak order 1."""

    name, sde_type, strong_order, weak_order = METHODS.euler, SDE_TYPES.ito, 0.5, 1.0

    compilable = True

    def step(self, t0, t1, y, extra):
        dw = self.bm(t0, t1)
        if self.compiled is not None:
            return euler_step(self.compiled, t0, t1, y, dw), extra
        f, g_dw = self.sde.f_and_g_prod(self.time(t0, y), y, dw)
        return y + (t1 - t0) * f + g_dw, extra

    def steps(self, intervals, y, extra):
        if self.compiled is None or torch.is_grad_enabled():
            return super().steps(intervals, y, extra)
        # Compiled without autograd (sdeint under no_grad, the adjoints' forward solves):
        # EULER_CHUNK steps per graph (a graph call's fixed cost is about a tenth of a step of
        # bench_sde's neural SDE), then single steps. The increments are queried in the steps'
        # order, as single steps query them. Solves with autograd keep single steps: unrolled
        # forward and backward graphs would take much longer to compile.
        bm = self.bm
        whole = len(intervals) - len(intervals) % EULER_CHUNK
        for start in range(0, whole, EULER_CHUNK):
            chunk = intervals[start : start + EULER_CHUNK]
            y = euler_steps(self.compiled, chunk, y, [bm(t0, t1) for t0, t1 in chunk])
        return super().steps(intervals[whole:], y, extra)


class _Milstein(Method):
    noise_types = (NOISE_TYPES.diagonal, NOISE_TYPES.additive, NOISE_TYPES.scalar)
    options = (METHOD_OPTIONS.grad_free,)
    strong_order, weak_order = 1.0, 1.0

    def step(self, t0, t1, y, extra):
        h = t1 - t0
        dw = self.bm(t0, t1)
        t = self.time(t0, y)
        f, g = self.sde.f_and_g(t, y)
        out = y + h * f + self.sde.prod(g, dw)
        if self.sde.noise_type == NOISE_TYPES.additive:
            return out, extra
        weight = 0.5 * dw * dw if self.sde_type == SDE_TYPES.stratonovich else 0.5 * (dw * dw - h)
        if self.opts.get(METHOD_OPTIONS.grad_free, False):
            sqrt_h = math.sqrt(h)
            shift = sqrt_h * (g if self.sde.diagonal else g[..., 0])
            if self.sde_type == SDE_TYPES.ito:
                # (∂g g) √h ≈ g(ŷ) - g(y) with ŷ = y + f h + g √h (Kloeden & Platen 11.1.3); the
                # O(√h) error meets a zero-mean weight, so strong order 1 is kept.
                difference = self.sde.g(t, y + h * f + shift) - g
            else:
                # The Stratonovich weight ΔW²/2 has mean h/2, so a one-sided difference would lose
                # order; a centred difference is accurate to O(h).
                difference = self.sde.g(t, y + 0.5 * shift) - self.sde.g(t, y - 0.5 * shift)
            return out + self.sde.prod(difference, weight) / sqrt_h, extra
        return out + self.sde.g_dg_prod(t, y, g, weight), extra


class MilsteinIto(_Milstein):
    """Itô Milstein: strong order 1.0 for diagonal, scalar and additive noise."""

    name, sde_type = METHODS.milstein, SDE_TYPES.ito


class MilsteinStratonovich(_Milstein):
    """Stratonovich Milstein: strong order 1.0 for diagonal, scalar and additive noise."""

    name, sde_type = METHODS.milstein, SDE_TYPES.stratonovich


class EulerHeun(Method):
    """Euler–Heun (Stratonovich): strong order 0.5 (1.0 for additive noise)."""

    name, sde_type, strong_order, weak_order = METHODS.euler_heun, SDE_TYPES.stratonovich, 0.5, 1.0

    def step(self, t0, t1, y, extra):
        dw = self.bm(t0, t1)
        f, g_dw = self.sde.f_and_g_prod(self.time(t0, y), y, dw)
        g_dw_pred = self.sde.g_prod(self.time(t1, y), y + g_dw, dw)
        return y + (t1 - t0) * f + 0.5 * (g_dw + g_dw_pred), extra


class Heun(Method):
    """Stochastic Heun (Stratonovich): strong order 0.5 (1.0 for additive noise), weak order 1."""

    name, sde_type, strong_order, weak_order = METHODS.heun, SDE_TYPES.stratonovich, 0.5, 1.0

    def step(self, t0, t1, y, extra):
        h = t1 - t0
        dw = self.bm(t0, t1)
        change = self.sde.increment(self.time(t0, y), y, h, dw)
        change_pred = self.sde.increment(self.time(t1, y), y + change, h, dw)
        return y + 0.5 * (change + change_pred), extra


class Midpoint(Method):
    """Stochastic midpoint (Stratonovich): strong order 0.5 (1.0 for additive noise)."""

    name, sde_type, strong_order, weak_order = METHODS.midpoint, SDE_TYPES.stratonovich, 0.5, 1.0

    def step(self, t0, t1, y, extra):
        h = t1 - t0
        dw = self.bm(t0, t1)
        y_mid = y + 0.5 * self.sde.increment(self.time(t0, y), y, h, dw)
        return y + self.sde.increment(self.time(t0 + 0.5 * h, y), y_mid, h, dw), extra


class ReversibleHeun(Method):
    """Reversible Heun (Kidger et al. 2021, Stratonovich): one f and g evaluation per step, and
    algebraically reversible, so its adjoint recovers the forward states exactly.

    Extra state: (z, f(t, z), g(t, z)).
    """

    name, sde_type, strong_order, weak_order = (
        METHODS.reversible_heun,
        SDE_TYPES.stratonovich,
        0.5,
        1.0,
    )

    compilable = True

    def init(self, t0, y0):
        f, g = self.sde.f_and_g(self.time(t0, y0), y0)
        return (y0, f, g)

    def step(self, t0, t1, y, extra):
        z, f, g = extra
        h = t1 - t0
        dw = self.bm(t0, t1)
        if self.compiled is not None:
            y1, z1, f1, g1 = reversible_heun_step(self.compiled, t0, t1, y, z, f, g, dw)
            return y1, (z1, f1, g1)
        z1 = 2 * y - z + h * f + self.sde.prod(g, dw)
        f1, g1 = self.sde.f_and_g(self.time(t1, y), z1)
        y1 = y + (0.5 * h) * (f + f1) + 0.5 * self.sde.prod(g + g1, dw)
        return y1, (z1, f1, g1)


class LogODEMidpoint(Method):
    """Log-ODE midpoint (Stratonovich): the midpoint method on the log-ODE vector field
    f h + g ΔW + Σ_kl (∂g_l g_k) A_kl, which uses the Lévy area A ('davie' or 'foster')."""

    name, sde_type, strong_order, weak_order = (
        METHODS.log_ode_midpoint,
        SDE_TYPES.stratonovich,
        0.5,
        1.0,
    )
    levy_area_approximations = _WITH_A
    brownian_query = {"return_A": True}

    def step(self, t0, t1, y, extra):
        h = t1 - t0
        dw, area = self.bm(t0, t1, return_A=True)

        def field(t, state):
            f, g_dw = self.sde.f_and_g_prod(self.time(t, y), state, dw)
            if area.dim() < 3:  # a one-channel motion has no area
                return h * f + g_dw
            return h * f + g_dw + self.sde.lie_area_term(self.time(t, y), state, area)

        y_mid = y + 0.5 * field(t0, y)
        return y + field(t0 + 0.5 * h, y_mid), extra


@dataclass(frozen=True)
class SRITableau:
    """Rößler's SRI scheme (Itô, diagonal and scalar noise): stages H0 (drift) and H1 (diffusion)."""

    c0: tuple[float, ...]
    c1: tuple[float, ...]
    a0: tuple[tuple[float, ...], ...]
    a1: tuple[tuple[float, ...], ...]
    b0: tuple[tuple[float, ...], ...]
    b1: tuple[tuple[float, ...], ...]
    alpha: tuple[float, ...]
    beta1: tuple[float, ...]
    beta2: tuple[float, ...]
    beta3: tuple[float, ...]
    beta4: tuple[float, ...]


@dataclass(frozen=True)
class SRATableau:
    """Rößler's SRA scheme (Itô, additive noise): drift stages H0, diffusion at times t + c1 h."""

    c0: tuple[float, ...]
    c1: tuple[float, ...]
    a0: tuple[tuple[float, ...], ...]
    b0: tuple[tuple[float, ...], ...]
    alpha: tuple[float, ...]
    beta1: tuple[float, ...]
    beta2: tuple[float, ...]


# Coefficients of an order-1.5 SRI scheme of Rößler (2010), "Runge–Kutta methods for the strong
# approximation of solutions of stochastic differential equations", SIAM J. Numer. Anal. 48(3);
# values as tabulated in torchsde's `srid2` tableau. Strong order 1.5 is checked in tests/sde.
SRID2 = SRITableau(
    c0=(0.0, 1.0, 0.5, 0.0),
    c1=(0.0, 0.25, 1.0, 0.25),
    a0=((), (1.0,), (0.25, 0.25), (0.0, 0.0, 0.0)),
    a1=((), (0.25,), (1.0, 0.0), (0.0, 0.0, 0.25)),
    b0=((), (0.0,), (1.0, 0.5), (0.0, 0.0, 0.0)),
    b1=((), (-0.5,), (1.0, 0.0), (2.0, -1.0, 0.5)),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0.0),
    beta1=(-1.0, 4 / 3, 2 / 3, 0.0),
    beta2=(1.0, -4 / 3, 1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0),
    beta4=(-2.0, 5 / 3, -2 / 3, 1.0),
)

# SRA1 of Rößler (2010) for additive noise (values as in torchsde's `sra1` tableau).
SRA1 = SRATableau(
    c0=(0.0, 0.75),
    c1=(1.0, 0.0),
    a0=((), (0.75,)),
    b0=((), (1.5,)),
    alpha=(1 / 3, 2 / 3),
    beta1=(1.0, 0.0),
    beta2=(-1.0, 1.0),
)


def _plus(base, scale, coefficients, vectors):
    """base + scale Σ c_j v_j over the nonzero coefficients (``base`` itself if there are none)."""
    for c, v in zip(coefficients, vectors):
        if c != 0.0:
            base = torch.add(base, v, alpha=scale * c)
    return base


def _add_prod(sde: SDEView, base, g, v):
    """base + prod(g, v), fused when the product is elementwise (diagonal noise)."""
    return torch.addcmul(base, g, v) if sde.prod is torch.mul else base + sde.prod(g, v)


def _combine(coefficients, vectors):
    """Σ c_j v_j over the nonzero coefficients; None when all are zero."""
    total = None
    for c, v in zip(coefficients, vectors):
        if c != 0.0:
            total = c * v if total is None else total + c * v
    return total


class SRK(Method):
    """Itô stochastic Runge–Kutta (Rößler): SRI for diagonal/scalar noise, SRA for additive noise.

    Strong order 1.5 for scalar and additive noise (and for diagonal noise whose g_i depends on
    y only through y_i). Needs the space-time Lévy area from the Brownian motion.
    """

    name, sde_type, strong_order, weak_order = METHODS.srk, SDE_TYPES.ito, 1.5, 2.0
    noise_types = (NOISE_TYPES.diagonal, NOISE_TYPES.additive, NOISE_TYPES.scalar)
    levy_area_approximations = _WITH_H
    brownian_query = {"return_U": True}

    def step(self, t0, t1, y, extra):
        if self.sde.noise_type == NOISE_TYPES.additive:
            return self._step_sra(SRA1, t0, t1, y), extra
        return self._step_sri(SRID2, t0, t1, y), extra

    def _beta(self, tab: SRITableau, like: torch.Tensor) -> torch.Tensor:
        """The (stages, 4) matrix of β coefficients, made once per dtype and device."""
        cached = getattr(self, "_beta_matrix", None)
        if cached is None or cached.dtype != like.dtype or cached.device != like.device:
            rows = list(zip(tab.beta1, tab.beta2, tab.beta3, tab.beta4))
            cached = torch.tensor(rows, dtype=like.dtype, device=like.device)
            self._beta_matrix = cached
        return cached

    def _step_sri(self, tab: SRITableau, t0, t1, y):
        h = t1 - t0
        sqrt_h = math.sqrt(h)
        dw, u = self.bm(t0, t1, return_U=True)
        i_10_over_h = u / h
        # Each stage's noise weight combines I_(k), I_(k,k)/√h, I_(k,0)/h and I_(k,k,k)/h with
        # its β coefficients: all four stages as one matrix product.
        dw_sq = dw * dw
        integrals = torch.stack(
            (
                dw,
                (dw_sq - h) * (0.5 / sqrt_h),
                i_10_over_h,
                (dw_sq - 3 * h).mul_(dw).mul_(1 / (6 * h)),
            )
        )
        noise_weights = torch.mm(self._beta(tab, dw), integrals.view(len(integrals), -1)).view(
            -1, *dw.shape
        )
        fs, gs = [], []
        out = y
        sde = self.sde
        for i in range(len(tab.alpha)):
            h0 = _plus(y, h, tab.a0[i], fs)
            diff0 = _combine(tab.b0[i], gs)
            if diff0 is not None:
                h0 = _add_prod(sde, h0, diff0, i_10_over_h)
            h1 = _plus(y, h, tab.a1[i], fs)
            diff1 = _combine(tab.b1[i], gs)
            if diff1 is not None:
                h1 = torch.add(h1, diff1 if sde.diagonal else diff1[..., 0], alpha=sqrt_h)
            f_i = sde.f(self.time(t0 + tab.c0[i] * h, y), h0)
            g_i = sde.g(self.time(t0 + tab.c1[i] * h, y), h1)
            fs.append(f_i)
            gs.append(g_i)
            if tab.alpha[i] != 0.0:
                out = torch.add(out, f_i, alpha=tab.alpha[i] * h)
            out = _add_prod(sde, out, g_i, noise_weights[i])
        return out

    def _step_sra(self, tab: SRATableau, t0, t1, y):
        h = t1 - t0
        dw, u = self.bm(t0, t1, return_U=True)
        i_10_over_h = u / h
        gs = [self.sde.g(self.time(t0 + c * h, y), y) for c in tab.c1]
        fs = []
        out = y
        for i in range(len(tab.alpha)):
            h0 = y
            drift_part = _combine(tab.a0[i], fs)
            if drift_part is not None:
                h0 = h0 + h * drift_part
            diff0 = _combine(tab.b0[i], gs)
            if diff0 is not None:
                h0 = h0 + self.sde.prod(diff0, i_10_over_h)
            f_i = self.sde.f(self.time(t0 + tab.c0[i] * h, y), h0)
            fs.append(f_i)
            out = out + (tab.alpha[i] * h) * f_i
            weight = tab.beta1[i] * dw + tab.beta2[i] * i_10_over_h
            if tab.beta1[i] != 0.0 or tab.beta2[i] != 0.0:
                out = out + self.sde.prod(gs[i], weight)
        return out


_ITO = {cls.name: cls for cls in (Euler, MilsteinIto, SRK)}
_STRATONOVICH = {
    cls.name: cls
    for cls in (EulerHeun, Heun, Midpoint, MilsteinStratonovich, ReversibleHeun, LogODEMidpoint)
}
METHOD_CLASSES = {SDE_TYPES.ito: _ITO, SDE_TYPES.stratonovich: _STRATONOVICH}


def compiled_methods() -> list[str]:
    """Names of the methods with a compiled step (``options={"compile": True}``)."""
    return sorted(
        {cls.name for table in METHOD_CLASSES.values() for cls in table.values() if cls.compilable}
    )


def methods_supporting(sde_type: str, noise_type: str) -> list[str]:
    """Names of the methods that solve SDEs of this type and noise type."""
    return sorted(
        name for name, cls in METHOD_CLASSES[sde_type].items() if noise_type in cls.noise_types
    )


def select_method(name: str, sde_type: str, noise_type: str) -> type[Method]:
    """The method class for a name, with a clear error when it does not fit the SDE."""
    if name not in METHODS:
        from kutta.errors import UnknownNameError

        raise UnknownNameError("method", name, METHODS.all())
    cls = METHOD_CLASSES[sde_type].get(name)
    if cls is None or noise_type not in cls.noise_types:
        raise InvalidArgumentError(
            f"method {name!r} does not support {sde_type} SDEs with {noise_type} noise; "
            f"methods that do: {methods_supporting(sde_type, noise_type)}"
        )
    return cls
