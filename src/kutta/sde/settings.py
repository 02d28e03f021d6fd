"""Names accepted by kutta.sde, with the same values as torchsde's.

Each container supports ``"euler" in METHODS``, ``METHODS.euler`` and ``METHODS.all()``.
"""

from __future__ import annotations


class _NameSet(type):
    def all(cls) -> list[str]:
        return sorted(v for k, v in vars(cls).items() if not k.startswith("_"))

    def __contains__(cls, item: object) -> bool:
        return item in cls.all()

    def __iter__(cls):
        return iter(cls.all())

    def __str__(cls) -> str:
        return str(cls.all())


class METHODS(metaclass=_NameSet):
    euler = "euler"
    milstein = "milstein"
    srk = "srk"
    midpoint = "midpoint"
    reversible_heun = "reversible_heun"
    adjoint_reversible_heun = "adjoint_reversible_heun"
    heun = "heun"
    log_ode_midpoint = "log_ode"
    euler_heun = "euler_heun"


class NOISE_TYPES(metaclass=_NameSet):
    general = "general"
    diagonal = "diagonal"
    scalar = "scalar"
    additive = "additive"


class SDE_TYPES(metaclass=_NameSet):
    ito = "ito"
    stratonovich = "stratonovich"


class LEVY_AREA_APPROXIMATIONS(metaclass=_NameSet):
    none = "none"
    space_time = "space-time"
    davie = "davie"
    foster = "foster"


class METHOD_OPTIONS(metaclass=_NameSet):
    grad_free = "grad_free"
