"""The explicit Runge–Kutta methods of kutta, as Butcher tableaus keyed by torchdiffeq's names.

Fixed-step methods carry no error estimate: ``euler``, ``midpoint``, ``heun2``, ``heun3``,
``ralston``, ``rk4`` (the 3/8 rule, as torchdiffeq's fixed-grid ``rk4``) and ``rk4_classic``.

Adaptive methods carry ``b_err`` (the same weights as torchdiffeq's ``c_error``, so step-size
control matches it) and a dense output: ``adaptive_heun``, ``fehlberg2``, ``bosh3``,
``dopri5``, ``tsit5`` and ``dopri8``. Every adaptive tableau is FSAL: its last stage is
``f(t + h, y_new)``, which the loop reuses as the next step's first stage and which the
Hermite-type dense outputs need. Where the published method is not FSAL a stage is appended
(weight 0 in ``b`` and in ``b_err``).

Sources of the numbers:

- dopri5: Dormand & Prince (1980), "A family of embedded Runge-Kutta formulae"; the embedded
  solution and the midpoint weights of the dense output from Shampine (1986), "Some practical
  Runge-Kutta formulas", as torchdiffeq uses them.
- dopri8: Prince & Dormand (1981), "High order embedded Runge-Kutta formulae" (RK8(7)13M, in
  the rational approximations torchdiffeq uses); dense output from its fifth-order
  continuous extension (as torchdiffeq carries it).
- tsit5: Tsitouras (2011), "Runge–Kutta pairs of order 5(4) satisfying only the first column
  simplifying assumption", with the high-precision coefficients and interpolant polynomials
  of DiffEqDevTools.jl / OrdinaryDiffEq.jl (``Tsit5Interp``). The sign of the last error
  weight is the corrected one (-1/66), see OrdinaryDiffEq.jl issue #1654.
- bosh3: Bogacki & Shampine (1989), "A 3(2) pair of Runge-Kutta formulas".
- fehlberg2: Fehlberg (1969) RK1(2), advancing with the second-order solution as torchdiffeq.
- the fixed-step methods are textbook (Butcher, "Numerical Methods for ODEs", 2016).

Example:
    >>> get_tableau("dopri5").order, get_tableau("dopri5").fsal
    (5, True)
"""

from __future__ import annotations

from kutta.errors import UnknownNameError
from kutta.solvers.tableau import ButcherTableau, hermite_dense

__all__ = [
    "ADAPTIVE_HEUN",
    "BOSH3",
    "DOPRI5",
    "DOPRI8",
    "EULER",
    "EXPLICIT_TABLEAUS",
    "FEHLBERG2",
    "HEUN2",
    "HEUN3",
    "MIDPOINT",
    "RALSTON",
    "RK4",
    "RK4_CLASSIC",
    "TSIT5",
    "get_tableau",
]

# ---------------------------------------------------------------------------------------------
# Fixed step
# ---------------------------------------------------------------------------------------------

EULER = ButcherTableau("euler", c=[0.0], a=[[]], b=[1.0], order=1)

MIDPOINT = ButcherTableau("midpoint", c=[0.0, 1 / 2], a=[[], [1 / 2]], b=[0.0, 1.0], order=2)

HEUN2 = ButcherTableau("heun2", c=[0.0, 1.0], a=[[], [1.0]], b=[1 / 2, 1 / 2], order=2)

HEUN3 = ButcherTableau(
    "heun3",
    c=[0.0, 1 / 3, 2 / 3],
    a=[[], [1 / 3], [0.0, 2 / 3]],
    b=[1 / 4, 0.0, 3 / 4],
    order=3,
)

# Ralston's second-order method: the two-stage choice minimising the leading error bound.
RALSTON = ButcherTableau("ralston", c=[0.0, 2 / 3], a=[[], [2 / 3]], b=[1 / 4, 3 / 4], order=2)

# torchdiffeq's fixed-grid "rk4" is Kutta's 3/8 rule, not the classical method.
RK4 = ButcherTableau(
    "rk4",
    c=[0.0, 1 / 3, 2 / 3, 1.0],
    a=[[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]],
    b=[1 / 8, 3 / 8, 3 / 8, 1 / 8],
    order=4,
)

RK4_CLASSIC = ButcherTableau(
    "rk4_classic",
    c=[0.0, 1 / 2, 1 / 2, 1.0],
    a=[[], [1 / 2], [0.0, 1 / 2], [0.0, 0.0, 1.0]],
    b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
    order=4,
)

# ---------------------------------------------------------------------------------------------
# Adaptive, low order
# ---------------------------------------------------------------------------------------------
# Dense output is cubic Hermite: torchdiffeq's midpoint weights for these three methods only
# make a first-order interpolant, while Hermite on the FSAL stage reaches the method's order.

# Heun's method with Euler's as the estimate. torchdiffeq's error weights (+1/2, -1/2) are the
# negated Heun-minus-Euler difference; the sign is irrelevant to any norm and kept for parity.
# The third stage is the appended FSAL stage f(t + h, y_new).
_ADAPTIVE_HEUN_B = (1 / 2, 1 / 2, 0.0)
ADAPTIVE_HEUN = ButcherTableau(
    "adaptive_heun",
    c=[0.0, 1.0, 1.0],
    a=[[], [1.0], list(_ADAPTIVE_HEUN_B[:2])],
    b=_ADAPTIVE_HEUN_B,
    order=2,
    b_err=[1 / 2, -1 / 2, 0.0],
    error_order=1,
    b_dense=hermite_dense(_ADAPTIVE_HEUN_B, last_is_f1=True),
    dense_order=2,
)

# Fehlberg's RK1(2) advancing with the second-order weights; its third stage is evaluated at
# the first-order solution, so a fourth (FSAL) stage at the second-order solution is appended.
_FEHLBERG2_B = (1 / 512, 255 / 256, 1 / 512, 0.0)
FEHLBERG2 = ButcherTableau(
    "fehlberg2",
    c=[0.0, 1 / 2, 1.0, 1.0],
    a=[[], [1 / 2], [1 / 256, 255 / 256], list(_FEHLBERG2_B[:3])],
    b=_FEHLBERG2_B,
    order=2,
    b_err=[-1 / 512, 0.0, 1 / 512, 0.0],
    error_order=1,
    b_dense=hermite_dense(_FEHLBERG2_B, last_is_f1=True),
    dense_order=2,
)

_BOSH3_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
BOSH3 = ButcherTableau(
    "bosh3",
    c=[0.0, 1 / 2, 3 / 4, 1.0],
    a=[[], [1 / 2], [0.0, 3 / 4], list(_BOSH3_B[:3])],
    b=_BOSH3_B,
    order=3,
    b_err=[2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8],
    error_order=2,
    b_dense=hermite_dense(_BOSH3_B, last_is_f1=True),
    dense_order=3,
)

# ---------------------------------------------------------------------------------------------
# Dormand–Prince 5(4)
# ---------------------------------------------------------------------------------------------

_DOPRI5_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
# The embedded solution torchdiffeq (and torchode) estimate with, a fourth-order member of
# Shampine (1986) rather than Dormand & Prince's original (5179/57600, ...): kept for parity.
_DOPRI5_B_EMBEDDED = (
    1951 / 21600,
    0.0,
    22642 / 50085,
    451 / 720,
    -12231 / 42400,
    649 / 6300,
    1 / 60,
)
# y(t + h/2) = y + h * sum_i mid_i k_i (Shampine 1986), halved as torchdiffeq stores them.
_DOPRI5_MID = (
    6025192743 / 30085553152 / 2,
    0.0,
    51252292925 / 65400821598 / 2,
    -2691868925 / 45128329728 / 2,
    187940372067 / 1594534317056 / 2,
    -1776094331 / 19743644256 / 2,
    11237099 / 235043384 / 2,
)
DOPRI5 = ButcherTableau(
    "dopri5",
    c=[0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    a=[
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        list(_DOPRI5_B[:6]),
    ],
    b=_DOPRI5_B,
    order=5,
    b_err=[b - e for b, e in zip(_DOPRI5_B, _DOPRI5_B_EMBEDDED)],
    error_order=4,
    b_dense=hermite_dense(_DOPRI5_B, last_is_f1=True, c_mid=_DOPRI5_MID),
    dense_order=4,
)

# ---------------------------------------------------------------------------------------------
# Tsitouras 5(4)
# ---------------------------------------------------------------------------------------------

_TSIT5_B = (
    0.09646076681806522951816731316512876,
    0.01,
    0.4798896504144995747752495322905965,
    1.379008574103741893192274821856873,
    -3.290069515436080679901047585711364,
    2.324710524099773982415355918398766,
    0.0,
)
_TSIT5_B_EMBEDDED = (
    0.09468075576583945807478876255758923,
    0.009183565540343253096776363936645314,
    0.4877705284247615707855642599631228,
    1.234297566930478985655109673884238,
    -2.707712349983525454881109975059322,
    1.866628418170587035753719399566211,
    1 / 66,
)
# Tsitouras' interpolant B_i(theta), coefficients of theta^1..theta^4 (OrdinaryDiffEq.jl's
# Tsit5Interp r_i1..r_i4; r_11 = 1 - 2.6e-17 is 1 in double precision).
_TSIT5_DENSE = (
    (1.0, -2.763706197274825911336735930481400, 2.913255461821912743750680993068080,
     -1.0530884977290216),
    (0.0, 0.13169999999999999727, -0.22339999999999999818, 0.1017),
    (0.0, 3.930296236894751528506874467098134, -5.941033872131504734702492025894580,
     2.490627285651252793),
    (0.0, -12.41107716693367698373438154068545, 30.33818863028232159817299036918366,
     -16.54810288924490272),
    (0.0, 37.50931341651103919496903965334520, -88.17890489476640110142766935412098,
     47.37952196281928122),
    (0.0, -27.89652628919728780594826314459864, 65.09189467479367152629021928716554,
     -34.87065786149660974),
    (0.0, 1.5, -4.0, 2.5),
)  # fmt: skip
TSIT5 = ButcherTableau(
    "tsit5",
    c=[0.0, 0.161, 0.327, 0.9, 0.9800255409045096857298102862870246, 1.0, 1.0],
    a=[
        [],
        [0.161],
        [-0.008480655492356988544426874250230775, 0.3354806554923569885444268742502308],
        [
            2.897153057105493432130432594192939,
            -6.359448489975074843148159912383826,
            4.362295432869581411017727318190887,
        ],
        [
            5.325864828439256604428877920840511,
            -11.74888356406282787774717033978577,
            7.495539342889836208304604784564358,
            -0.09249506636175524925650207933207192,
        ],
        [
            5.861455442946420028659251486982648,
            -12.92096931784710929170611868178336,
            8.159367898576158643180400794539253,
            -0.07158497328140099722453054252582974,
            -0.02826905039406838290900305721271224,
        ],
        list(_TSIT5_B[:6]),
    ],
    b=_TSIT5_B,
    order=5,
    b_err=[b - e for b, e in zip(_TSIT5_B, _TSIT5_B_EMBEDDED)],
    error_order=4,
    b_dense=_TSIT5_DENSE,
    dense_order=4,
)

# ---------------------------------------------------------------------------------------------
# Dormand–Prince 8(7)
# ---------------------------------------------------------------------------------------------

_DOPRI8_B = (
    14005451 / 335480064,
    0.0,
    0.0,
    0.0,
    0.0,
    -59238493 / 1068277825,
    181606767 / 758867731,
    561292985 / 797845732,
    -1041891430 / 1371343529,
    760417239 / 1151165299,
    118820643 / 751138087,
    -528747749 / 2220607170,
    1 / 4,
    0.0,
)
_DOPRI8_B_EMBEDDED = (
    13451932 / 455176623,
    0.0,
    0.0,
    0.0,
    0.0,
    -808719846 / 976000145,
    1757004468 / 5645159321,
    656045339 / 265891186,
    -3867574721 / 1518517206,
    465885868 / 322736535,
    53011238 / 667516719,
    2 / 45,
    0.0,
    0.0,
)
# The continuous extension of RK8(7)13M as torchdiffeq carries it (its midpoint weights are
# mid_i = theta * P_i(theta) at theta = 1/2): coefficients of P_i in theta^0..theta^5.
_DOPRI8_MID_POLYNOMIALS = {
    0: (1.0, -6.6910181737837595697, 19.9990069333683970610, -30.0610568289666450593,
        22.1396504998094068976, -6.3448349392860401388),
    5: (0.0, -7.6142658045872677172, 52.2273532792945524050, -121.4999627731334642623,
        116.4422149550342161651, -39.6107919852202505218),
    6: (0.0, 10.7281392630428866124, -46.8919164181093621583, 83.1721004639847717481,
        -67.1451318825957197185, 20.3761213808791436958),
    7: (0.0, 0.5526637063753648783, -0.1890893225010595467, 9.5724507555993664382,
        -16.5672243527496524646, 7.3347098826795362023),
    8: (0.0, 4.2186562625665153803, -35.7075975946222072821, 87.8406057677205645007,
        -89.9916014847245016028, 32.8801774352459155182),
    9: (0.0, -0.6627209125361597559, 6.2736448083240352160, -17.4152107770762969005,
        22.6237489648532849093, -10.1588990526426760954),
    10: (0.0, -1.2636789001135462218, 10.3160881272450748458, -28.5903289514790976966,
         32.2362340167355370113, -12.5401268098782561200),
    11: (0.0, 5.4106037898590422230, -34.7650769866611817349, 81.6630950584341412934,
         -82.1020315488359848644, 29.5553001484516038033),
    12: (0.0, -7.0321379067945741781, 47.7457971078225540396, -114.9375291377009418170,
         116.2662185791119533462, -41.7923486424390588923),
    13: (0.0, 2.3537586759714983486, -19.0082099341608028453, 50.2558364226176017553,
         -53.9020777466385396792, 20.3006925822100825485),
}  # fmt: skip
DOPRI8 = ButcherTableau(
    "dopri8",
    c=[
        0.0,
        1 / 18,
        1 / 12,
        1 / 8,
        5 / 16,
        3 / 8,
        59 / 400,
        93 / 200,
        5490023248 / 9719169821,
        13 / 20,
        1201146811 / 1299019798,
        1.0,
        1.0,
        1.0,
    ],
    a=[
        [],
        [1 / 18],
        [1 / 48, 1 / 16],
        [1 / 32, 0.0, 3 / 32],
        [5 / 16, 0.0, -75 / 64, 75 / 64],
        [3 / 80, 0.0, 0.0, 3 / 16, 3 / 20],
        [
            29443841 / 614563906,
            0.0,
            0.0,
            77736538 / 692538347,
            -28693883 / 1125000000,
            23124283 / 1800000000,
        ],
        [
            16016141 / 946692911,
            0.0,
            0.0,
            61564180 / 158732637,
            22789713 / 633445777,
            545815736 / 2771057229,
            -180193667 / 1043307555,
        ],
        [
            39632708 / 573591083,
            0.0,
            0.0,
            -433636366 / 683701615,
            -421739975 / 2616292301,
            100302831 / 723423059,
            790204164 / 839813087,
            800635310 / 3783071287,
        ],
        [
            246121993 / 1340847787,
            0.0,
            0.0,
            -37695042795 / 15268766246,
            -309121744 / 1061227803,
            -12992083 / 490766935,
            6005943493 / 2108947869,
            393006217 / 1396673457,
            123872331 / 1001029789,
        ],
        [
            -1028468189 / 846180014,
            0.0,
            0.0,
            8478235783 / 508512852,
            1311729495 / 1432422823,
            -10304129995 / 1701304382,
            -48777925059 / 3047939560,
            15336726248 / 1032824649,
            -45442868181 / 3398467696,
            3065993473 / 597172653,
        ],
        [
            185892177 / 718116043,
            0.0,
            0.0,
            -3185094517 / 667107341,
            -477755414 / 1098053517,
            -703635378 / 230739211,
            5731566787 / 1027545527,
            5232866602 / 850066563,
            -4093664535 / 808688257,
            3962137247 / 1805957418,
            65686358 / 487910083,
        ],
        [
            403863854 / 491063109,
            0.0,
            0.0,
            -5068492393 / 434740067,
            -411421997 / 543043805,
            652783627 / 914296604,
            11173962825 / 925320556,
            -13158990841 / 6184727034,
            3936647629 / 1978049680,
            -160528059 / 685178525,
            248638103 / 1413531060,
            0.0,
        ],
        list(_DOPRI8_B[:13]),
    ],
    b=_DOPRI8_B,
    order=8,
    b_err=[b - e for b, e in zip(_DOPRI8_B, _DOPRI8_B_EMBEDDED)],
    error_order=7,
    # The continuous extension itself (B_i(theta) = theta * P_i(theta)) is fifth order, where
    # torchdiffeq's quartic through its midpoint is only fourth: 20-70x smaller output errors.
    b_dense=[_DOPRI8_MID_POLYNOMIALS.get(i, (0.0,) * 6) for i in range(14)],
    dense_order=5,
)

EXPLICIT_TABLEAUS: dict[str, ButcherTableau] = {
    tableau.name: tableau
    for tableau in (
        EULER,
        MIDPOINT,
        HEUN2,
        HEUN3,
        RALSTON,
        RK4,
        RK4_CLASSIC,
        ADAPTIVE_HEUN,
        FEHLBERG2,
        BOSH3,
        DOPRI5,
        TSIT5,
        DOPRI8,
    )
}


def get_tableau(name: str) -> ButcherTableau:
    """The explicit tableau registered under ``name`` (torchdiffeq's method names).

    Raises:
        UnknownNameError: if no explicit method has that name; the message lists the valid ones.

    Example:
        >>> get_tableau("rk4").b
        (0.125, 0.375, 0.375, 0.125)
    """
    try:
        return EXPLICIT_TABLEAUS[name]
    except (KeyError, TypeError):
        raise UnknownNameError("method", name, list(EXPLICIT_TABLEAUS)) from None
