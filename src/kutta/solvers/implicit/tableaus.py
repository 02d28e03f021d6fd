"""Coefficients of the implicit methods, as validated immutable data.

Two families:

* :class:`RosenbrockTableau`, in the transformed form of Hairer & Wanner (Solving ODEs II,
  Sec. IV.7, eq. 7.4') that Hairer's RODAS and DifferentialEquations.jl use. With
  ``M = I - h gamma J``, stage ``i`` solves::

      M U_i = h gamma (f(t + c_i h, y + sum_j a_ij U_j) + sum_j (C_ij / h) U_j + h d_i df/dt)

  and ``y_new = y + sum b_j U_j``, ``error = sum e_j U_j``,
  ``y(t + theta h) = y + sum_j P_j(theta) U_j`` with ``P_j(theta) = sum_m dense[j][m] theta^(m+1)``.
  Construction checks the untransformed method (``Gamma = (I / gamma - C)^-1``,
  ``alpha = a Gamma``): its row sums are ``c``, its ``Gamma`` row sums are ``d``, and its weights
  ``b Gamma`` sum to 1, which catches a mistyped coefficient in any row.

* :class:`DIRKTableau`, a (E)SDIRK or fully implicit Runge–Kutta Butcher tableau with a full
  ``a`` matrix. Construction checks row sums against ``c`` and ``sum b = 1`` (``sum b_err = 0``).

Sources are named next to each tableau.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import numpy as np
import torch

_TOL = 1e-10


def _matrix(rows: Sequence[Sequence[float]], n: int) -> tuple[tuple[float, ...], ...]:
    """A square ``n x n`` tuple matrix from ragged rows, zero-padded on the right."""
    return tuple(tuple(float(v) for v in row) + (0.0,) * (n - len(row)) for row in rows)


@dataclasses.dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in transformed form (see the module docstring).

    Args:
        name: the method's name, used in messages.
        gamma: the diagonal of ``Gamma``.
        a: transformed stage coefficients, strictly lower triangular (ragged rows allowed).
        C: transformed coupling coefficients, strictly lower triangular.
        c: stage times.
        d: coefficients of ``h df/dt`` per stage (row sums of ``Gamma``).
        b: solution weights on ``U``.
        e: error weights on ``U`` (``y_new - y_embedded``).
        dense: ``dense[j][m]`` multiplies ``theta^(m+1) U_j``; ``sum_m dense[j][m] = b[j]``.
        order, error_order: orders of the solution and of the embedded solution.

    Example:
        >>> RODAS5.stages, RODAS5.order
        (8, 5)
    """

    name: str
    gamma: float
    a: tuple[tuple[float, ...], ...]
    C: tuple[tuple[float, ...], ...]
    c: tuple[float, ...]
    d: tuple[float, ...]
    b: tuple[float, ...]
    e: tuple[float, ...]
    dense: tuple[tuple[float, ...], ...]
    order: int
    error_order: int

    def __post_init__(self) -> None:
        s = len(self.c)
        set_ = functools.partial(object.__setattr__, self)
        set_("a", _matrix(self.a, s))
        set_("C", _matrix(self.C, s))
        for field in ("c", "d", "b", "e"):
            set_(field, tuple(float(v) for v in getattr(self, field)))
        set_("dense", tuple(tuple(float(v) for v in row) for row in self.dense))
        self._validate()

    def _validate(self) -> None:
        s, name = len(self.c), self.name

        def fail(msg: str) -> None:
            raise ValueError(f"invalid Rosenbrock tableau {name!r}: {msg}")

        if len(self.a) != s or len(self.C) != s:
            fail("`a` and `C` need one row per stage")
        if any(len(v) != s for v in (self.d, self.b, self.e)) or len(self.dense) != s:
            fail("`d`, `b`, `e` and `dense` need one entry per stage")
        a, C = np.array(self.a), np.array(self.C)
        if np.any(np.triu(a) != 0) or np.any(np.triu(C) != 0):
            fail("`a` and `C` must be strictly lower triangular")
        Gamma = np.linalg.inv(np.eye(s) / self.gamma - C)
        alpha = a @ Gamma
        if np.max(np.abs(alpha.sum(1) - np.array(self.c))) > _TOL:
            fail(f"the stage times c = {self.c} do not match the coefficients")
        if np.max(np.abs(Gamma.sum(1) - np.array(self.d))) > _TOL:
            fail(f"d = {self.d} are not the row sums of Gamma")
        if abs(float(np.array(self.b) @ Gamma.sum(1) - 1.0)) > _TOL:
            fail("the untransformed weights do not sum to 1")
        for j, row in enumerate(self.dense):
            if abs(math.fsum(row) - self.b[j]) > _TOL:
                fail(f"dense output P_{j}(1) = {math.fsum(row)!r} differs from b[{j}]")

    @property
    def stages(self) -> int:
        return len(self.c)

    @functools.cache  # noqa: B019 -- tableaus are few and live for the whole program
    def to(self, dtype: torch.dtype, device: torch.device | str | None = None) -> RosenbrockTensors:
        """The coefficients as tensors (methods call this once per solve, in ``bind``)."""

        def t(x):
            return torch.tensor(x, dtype=dtype, device=device)

        return RosenbrockTensors(
            a=t(self.a), C=t(self.C), b=t(self.b), e=t(self.e), dense=t(self.dense)
        )


class RosenbrockTensors:
    """A :class:`RosenbrockTableau`'s matrices cast to one dtype and device; ``a_rows[i]`` and
    ``C_rows[i]`` are the rows ``a[i, :i]`` and ``C[i, :i]``, sliced once."""

    __slots__ = ("a", "C", "b", "e", "dense", "a_rows", "C_rows")

    def __init__(self, a, C, b, e, dense):
        self.a, self.C, self.b, self.e, self.dense = a, C, b, e, dense
        self.a_rows = [a[i, :i].contiguous() for i in range(a.shape[0])]
        self.C_rows = [C[i, :i].contiguous() for i in range(C.shape[0])]


def _rodas_dense(
    b: Sequence[float], h_rows: Sequence[Sequence[float]]
) -> tuple[tuple[float, ...], ...]:
    """Power-basis dense weights of ``y0 (1 - th) + th (y1 + (1 - th)(K1 + th K2 + th^2 K3))``.

    ``K_r = sum_j h_rows[r][j] U_j``: the Rodas interpolant of DifferentialEquations.jl, which
    expands to ``P_j = th (b_j + H1j) + th^2 (H2j - H1j) + th^3 (H3j - H2j) - th^4 H3j``.
    """
    H1, H2, H3 = (np.asarray(r, dtype=np.float64) for r in h_rows)
    bb = np.asarray(b, dtype=np.float64)
    cols = np.stack([bb + H1, H2 - H1, H3 - H2, -H3], axis=1)
    return tuple(tuple(float(v) for v in row) for row in cols)


# Rodas5: G. Di Marzo, "RODAS5(4) -- Méthodes de Rosenbrock d'ordre 5(4) adaptées aux problèmes
# différentiels-algébriques", MSc thesis, Univ. Geneva 1993; coefficients (transformed form) and
# dense-output rows h2*, h3*, h4* as in DifferentialEquations.jl (OrdinaryDiffEq Rodas5Tableau).
# Stiffly accurate: stages 7 and 8 are at (t + h, y_new - U_8) and the error is U_8.
_R5_A6 = (
    -14.09640773051259,
    6.925207756232704,
    -41.47510893210728,
    2.343771018586405,
    24.13215229196062,
)
_R5_B = (*_R5_A6, 1.0, 1.0, 1.0)
RODAS5 = RosenbrockTableau(
    name="rodas5",
    gamma=0.19,
    a=(
        (),
        (2.0,),
        (3.040894194418781, 1.041747909077569),
        (2.576417536461461, 1.62208306077664, -0.9089668560264532),
        (2.760842080225597, 1.446624659844071, -0.3036980084553738, 0.2877498600325443),
        _R5_A6,
        (*_R5_A6, 1.0),
        (*_R5_A6, 1.0, 1.0),
    ),
    C=(
        (),
        (-10.31323885133993,),
        (-21.04823117650003, -7.234992135176716),
        (32.22751541853323, -4.943732386540191, 19.44922031041879),
        (-20.69865579590063, -8.816374604402768, 1.260436877740897, -0.7495647613787146),
        (
            -46.22004352711257,
            -17.49534862857472,
            -289.6389582892057,
            93.60855400400906,
            318.3822534212147,
        ),
        (
            34.20013733472935,
            -14.15535402717690,
            57.82335640988400,
            25.83362985412365,
            1.408950972071624,
            -6.551835421242162,
        ),
        (
            42.57076742291101,
            -13.80770672017997,
            93.98938432427124,
            18.77919633714503,
            -31.58359187223370,
            -6.685968952921985,
            -5.810979938412932,
        ),
    ),
    c=(0.0, 0.38, 0.3878509998321533, 0.4839718937873840, 0.4570477008819580, 1.0, 1.0, 1.0),
    d=(
        0.19,
        -0.1823079225333714636,
        -0.319231832186874912,
        0.3449828624725343,
        -0.377417564392089818,
        0.0,
        0.0,
        0.0,
    ),
    b=_R5_B,
    e=(0.0,) * 7 + (1.0,),
    dense=_rodas_dense(
        _R5_B,
        (
            (
                27.354592673333357,
                -6.925207756232857,
                26.40037733258859,
                0.5635230501052979,
                -4.699151156849391,
                -1.6008677469422725,
                -1.5306074446748028,
                -1.3929872940716344,
            ),
            (
                44.19024239501722,
                1.3677947663381929e-13,
                202.93261852171622,
                -35.5669339789154,
                -181.91095152160645,
                3.4116351403665033,
                2.5793540257308067,
                2.2435122582734066,
            ),
            (
                -44.0988150021747,
                -5.755396159656812e-13,
                -181.26175034586677,
                56.99302194811676,
                183.21182741427398,
                -7.480257918273637,
                -5.792426076169686,
                -5.32503859794143,
            ),
        ),
    ),
    order=5,
    error_order=4,
)


def _rosenbrock23() -> RosenbrockTableau:
    """Shampine & Reichelt's ode23s (SIAM J. Sci. Comput. 18, 1997), in transformed form.

    The paper's step (W = I - h d J, k's in derivative units)::

        k1 = W^-1 (F0 + h d T);  F1 = f(t + h/2, y + h k1 / 2);  k2 = W^-1 (F1 - k1) + k1
        y_new = y + h k2;  F2 = f(t + h, y_new)
        k3 = W^-1 (F2 - e32 (k2 - F1) - 2 (k1 - F0) + h d T);  err = h (k1 - 2 k2 + k3) / 6

    with ``d = 1 / (2 + sqrt 2)``, ``e32 = 6 + sqrt 2``. Substituting ``U1 = h d k1``,
    ``U2 = h d (k2 - k1)``, ``U3 = h d (k3 - e32 (k2 - k1) - 2 k1)`` (and eliminating F0, F1 via
    their own stage equations) gives the coefficients below; the dense output is the paper's
    ``y + h (th (1 - th) k1 + th (th - 2d) k2) / (1 - 2d)``.
    """
    d = 1.0 / (2.0 + math.sqrt(2.0))
    e32 = 6.0 + math.sqrt(2.0)
    return RosenbrockTableau(
        name="rosenbrock23",
        gamma=d,
        a=((), (1.0 / (2.0 * d),), (1.0 / d, 1.0 / d)),
        C=((), (-1.0 / d,), (-2.0 / d, -e32 / d)),
        c=(0.0, 0.5, 1.0),
        d=(d, 0.0, -d),
        b=(1.0 / d, 1.0 / d, 0.0),
        e=(1.0 / (6.0 * d), (e32 - 2.0) / (6.0 * d), 1.0 / (6.0 * d)),
        dense=((1.0 / d, 0.0), (-2.0 / (1.0 - 2.0 * d), 1.0 / (d * (1.0 - 2.0 * d))), (0.0, 0.0)),
        order=2,
        error_order=3,
    )


ROSENBROCK23 = _rosenbrock23()


@dataclasses.dataclass(frozen=True)
class DIRKTableau:
    """An implicit Runge–Kutta method: full ``a`` (diagonally implicit when lower triangular).

    Args:
        name: the method's name, used in messages.
        c, a, b: the Butcher tableau (``a`` rows may be ragged; missing entries are zero).
        order: order of the ``b`` solution.
        b_err: ``b - b_embedded`` (sums to 0) for adaptive methods, else None.
        error_order: order of the embedded solution.

    Example:
        >>> KVAERNO3.diagonal, KVAERNO3.explicit_first_stage
        (0.4358665215, True)
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_err: tuple[float, ...] | None = None
    error_order: int | None = None

    def __post_init__(self) -> None:
        s = len(self.c)
        set_ = functools.partial(object.__setattr__, self)
        set_("c", tuple(float(v) for v in self.c))
        set_("a", _matrix(self.a, s))
        set_("b", tuple(float(v) for v in self.b))
        if self.b_err is not None:
            set_("b_err", tuple(float(v) for v in self.b_err))
        self._validate()

    def _validate(self) -> None:
        s, name = len(self.c), self.name

        def fail(msg: str) -> None:
            raise ValueError(f"invalid implicit RK tableau {name!r}: {msg}")

        if len(self.a) != s or any(len(r) > s for r in self.a) or len(self.b) != s:
            fail("`a` needs s rows of at most s entries and `b` s entries")
        for i, row in enumerate(self.a):
            if abs(math.fsum(row) - self.c[i]) > _TOL:
                fail(f"row {i} of `a` sums to {math.fsum(row)!r}, but c[{i}] = {self.c[i]!r}")
        if abs(math.fsum(self.b) - 1.0) > _TOL:
            fail(f"the weights `b` sum to {math.fsum(self.b)!r}, not 1")
        if self.b_err is not None:
            if len(self.b_err) != s or abs(math.fsum(self.b_err)) > _TOL:
                fail("`b_err` needs s entries summing to 0")
            if self.error_order is None:
                fail("an embedded error estimate needs `error_order`")
        if self.diagonally_implicit:
            diag = [self.a[i][i] for i in range(s)]
            implicit = diag[1:] if self.explicit_first_stage else diag
            if any(abs(g - implicit[0]) > _TOL for g in implicit) or implicit[0] <= 0:
                fail("a diagonally implicit tableau needs one positive diagonal entry")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def diagonally_implicit(self) -> bool:
        return all(v == 0.0 for i, row in enumerate(self.a) for v in row[i + 1 :])

    @property
    def explicit_first_stage(self) -> bool:
        return self.a[0][0] == 0.0

    @property
    def diagonal(self) -> float:
        """The common diagonal entry of the implicit stages of a diagonally implicit tableau."""
        return self.a[-1][-1]

    @property
    def stiffly_accurate(self) -> bool:
        return all(abs(x - y) <= _TOL for x, y in zip(self.a[-1], self.b))


# Kværnø, "Singly diagonally implicit Runge-Kutta methods with an explicit first stage",
# BIT 44 (2004), 489-502; 4-stage order 3(2) and 7-stage order 5(4) ESDIRKs (values as in
# DifferentialEquations.jl's Kvaerno3Tableau/Kvaerno5Tableau). Both are stiffly accurate; the
# embedded solution is the second-to-last stage.
def _kvaerno3() -> DIRKTableau:
    g = 0.4358665215
    row3 = (0.490563388419108, 0.073570090080892, g)
    row4 = (0.308809969973036, 1.490563388254106, -1.235239879727145, g)
    return DIRKTableau(
        name="kvaerno3",
        c=(0.0, 2 * g, 1.0, 1.0),
        a=((), (g, g), row3, row4),
        b=row4,
        b_err=tuple(x - y for x, y in zip(row4, (*row3, 0.0))),
        order=3,
        error_order=2,
    )


def _kvaerno5() -> DIRKTableau:
    g = 0.26
    row6 = (
        0.13855640231268224,
        0.0,
        -0.04245337201752043,
        0.02446657898003141,
        0.61943039072480676,
        g,
    )
    row7 = (
        0.13659751177640291,
        0.0,
        -0.05496908796538376,
        -0.04118626728321046,
        0.62993304899016403,
        0.06962479448202728,
        g,
    )
    return DIRKTableau(
        name="kvaerno5",
        c=(0.0, 2 * g, 1.230333209967908, 0.895765984350076, 0.436393609858648, 1.0, 1.0),
        a=(
            (),
            (g, g),
            (0.13, 0.84033320996790809, g),
            (0.22371961478320505, 0.47675532319799699, -0.06470895363112615, g),
            (
                0.16648564323248321,
                0.10450018841591720,
                0.03631482272098715,
                -0.13090704451073998,
                g,
            ),
            row6,
            row7,
        ),
        b=row7,
        b_err=tuple(x - y for x, y in zip(row7, (*row6, 0.0))),
        order=5,
        error_order=4,
    )


def _trbdf2() -> DIRKTableau:
    """TR-BDF2 as an ESDIRK (Hosea & Shampine, Appl. Numer. Math. 20 (1996), 21-37).

    ``gamma = 2 - sqrt 2`` is where the trapezoidal stage ends; the diagonal is ``gamma / 2``.
    The embedded weights are ``((1 - w) / 3, (3 w + 1) / 3, d / 3)``, ``w = sqrt 2 / 4``.
    """
    gam = 2.0 - math.sqrt(2.0)
    d = gam / 2.0
    w = math.sqrt(2.0) / 4.0
    b = (w, w, d)
    b_hat = ((1.0 - w) / 3.0, (3.0 * w + 1.0) / 3.0, d / 3.0)
    return DIRKTableau(
        name="trbdf2",
        c=(0.0, gam, 1.0),
        a=((), (d, d), b),
        b=b,
        b_err=tuple(x - y for x, y in zip(b, b_hat)),
        order=2,
        error_order=3,
    )


KVAERNO3 = _kvaerno3()
KVAERNO5 = _kvaerno5()
TRBDF2 = _trbdf2()

# Fixed-step methods under torchdiffeq's names. Gauss–Legendre and Radau IIA coefficients: Hairer
# & Wanner, Solving ODEs II, Tables IV.5.1, IV.5.5, IV.5.6 (and Butcher, Numerical Methods for
# ODEs, Sec. 34).
_S3, _S6, _S15 = math.sqrt(3.0), math.sqrt(6.0), math.sqrt(15.0)
_SDIRK2_GAMMA = 1.0 - math.sqrt(2.0) / 2.0

IMPLICIT_EULER = DIRKTableau("implicit_euler", c=(1.0,), a=((1.0,),), b=(1.0,), order=1)
IMPLICIT_MIDPOINT = DIRKTableau("implicit_midpoint", c=(0.5,), a=((0.5,),), b=(1.0,), order=2)
TRAPEZOID = DIRKTableau("trapezoid", c=(0.0, 1.0), a=((), (0.5, 0.5)), b=(0.5, 0.5), order=2)
# Alexander's L-stable 2-stage SDIRK (SIAM J. Numer. Anal. 14, 1977), as torchdiffeq's sdirk2.
SDIRK2 = DIRKTableau(
    "sdirk2",
    c=(_SDIRK2_GAMMA, 1.0),
    a=((_SDIRK2_GAMMA,), (1.0 - _SDIRK2_GAMMA, _SDIRK2_GAMMA)),
    b=(1.0 - _SDIRK2_GAMMA, _SDIRK2_GAMMA),
    order=2,
)
GL4 = DIRKTableau(
    "gl4",
    c=(0.5 - _S3 / 6.0, 0.5 + _S3 / 6.0),
    a=((0.25, 0.25 - _S3 / 6.0), (0.25 + _S3 / 6.0, 0.25)),
    b=(0.5, 0.5),
    order=4,
)
GL6 = DIRKTableau(
    "gl6",
    c=(0.5 - _S15 / 10.0, 0.5, 0.5 + _S15 / 10.0),
    a=(
        (5.0 / 36.0, 2.0 / 9.0 - _S15 / 15.0, 5.0 / 36.0 - _S15 / 30.0),
        (5.0 / 36.0 + _S15 / 24.0, 2.0 / 9.0, 5.0 / 36.0 - _S15 / 24.0),
        (5.0 / 36.0 + _S15 / 30.0, 2.0 / 9.0 + _S15 / 15.0, 5.0 / 36.0),
    ),
    b=(5.0 / 18.0, 4.0 / 9.0, 5.0 / 18.0),
    order=6,
)
RADAU_IIA3 = DIRKTableau(
    "radauIIA3",
    c=(1.0 / 3.0, 1.0),
    a=((5.0 / 12.0, -1.0 / 12.0), (0.75, 0.25)),
    b=(0.75, 0.25),
    order=3,
)
RADAU_IIA5 = DIRKTableau(
    "radauIIA5",
    c=(0.4 - _S6 / 10.0, 0.4 + _S6 / 10.0, 1.0),
    a=(
        (
            11.0 / 45.0 - 7.0 * _S6 / 360.0,
            37.0 / 225.0 - 169.0 * _S6 / 1800.0,
            -2.0 / 225.0 + _S6 / 75.0,
        ),
        (
            37.0 / 225.0 + 169.0 * _S6 / 1800.0,
            11.0 / 45.0 + 7.0 * _S6 / 360.0,
            -2.0 / 225.0 - _S6 / 75.0,
        ),
        (4.0 / 9.0 - _S6 / 36.0, 4.0 / 9.0 + _S6 / 36.0, 1.0 / 9.0),
    ),
    b=(4.0 / 9.0 - _S6 / 36.0, 4.0 / 9.0 + _S6 / 36.0, 1.0 / 9.0),
    order=5,
)
