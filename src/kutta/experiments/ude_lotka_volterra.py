"""A universal differential equation recovers the missing terms of Lotka–Volterra
(Rackauckas et al. 2020, "Universal Differential Equations for Scientific Machine Learning").

The predator–prey model ``du1 = alpha u1 - beta u1 u2``, ``du2 = gamma u1 u2 - delta u2`` is
observed at 31 noisy points on t in [0, 3]. We pretend to know only the birth and death terms
(``alpha u1``, ``-delta u2``) and let a small network learn the rest from the data. Sparse
regression (STLSQ over polynomials) then turns the network back into equations; the check is
that it finds exactly the interaction terms ``-beta u1 u2`` and ``+gamma u1 u2``, and that the
recovered equations extrapolate to t = 50, far outside the data, where the network does not.

Setup as in the paper (numbers in ../shared/reference/published_results.md): (alpha, beta,
gamma, delta) = (1.3, 0.9, 0.8, 1.8), u0 = (0.44249296, 4.6280594) (known: every solve starts
there), noise
``X + 5e-3 * mean(X) * N(0, 1)``, a 2-5-5-5-2 network with Gaussian RBF activations, Adam(0.1)
for 200 iterations, then a quasi-Newton finish (L-BFGS here, BFGS there).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kutta import odeint
from kutta.errors import InvalidArgumentError, SolverError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import register
from kutta.models import UDE, polynomial_library, stlsq
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput

NAMES = ("prey u1", "predator u2")
#: the step budget between two of the 1000 output times to t = 50 (the true system takes about 2):
#: a model that blows up fails fast instead of crawling towards its singularity
MAX_STEPS_PER_OUTPUT = 200


@dataclasses.dataclass
class LotkaVolterraData:
    alpha: float = 1.3
    beta: float = 0.9
    gamma: float = 0.8
    delta: float = 1.8
    u0: list[float] = dataclasses.field(default_factory=lambda: [0.44249296, 4.6280594])
    t_end: float = 3.0
    points: int = 31
    #: noise standard deviation, relative to each state's mean over the data
    noise: float = 5e-3
    #: how far the recovered equations are checked (the data end at t_end)
    t_extrapolate: float = 50.0

    def __post_init__(self) -> None:
        if len(self.u0) != 2:
            raise InvalidArgumentError(f"data.u0 must have 2 entries, got {self.u0}")
        if self.points < 3 or not self.t_end > 0 or self.noise < 0:
            raise InvalidArgumentError("data.points >= 3, data.t_end > 0 and data.noise >= 0")
        if not self.t_extrapolate >= self.t_end:
            raise InvalidArgumentError("data.t_extrapolate must be >= data.t_end")


@dataclasses.dataclass
class UDEModel:
    hidden: int = 5
    layers: int = 3
    #: sparse regression: polynomial library degree and the smallest coefficient kept
    #: the paper's library goes to degree 5, but on one trajectory the monomials are nearly
    #: collinear and STLSQ then needs a tighter fit than a CPU-minute of training buys
    library_degree: int = 2
    threshold: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 1 or self.library_degree < 1:
            raise InvalidArgumentError("model.hidden, model.layers, model.library_degree >= 1")
        if self.threshold < 0:
            raise InvalidArgumentError(f"model.threshold must be >= 0, got {self.threshold}")


def _default_solver() -> SolverConfig:
    return SolverConfig(method="tsit5", rtol=1e-6, atol=1e-8)


def _default_train() -> TrainConfig:
    return TrainConfig(
        steps=200, lbfgs_steps=1000, lr=0.1, batch_size=1, dtype="float64", log_every=10,
        checkpoint_every=50,
    )  # fmt: skip


@dataclasses.dataclass
class UDELotkaVolterraConfig:
    data: LotkaVolterraData = dataclasses.field(default_factory=LotkaVolterraData)
    model: UDEModel = dataclasses.field(default_factory=UDEModel)
    solver: SolverConfig = dataclasses.field(default_factory=_default_solver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


class GaussianRBF(nn.Module):
    """The activation ``exp(-x^2)`` the paper uses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x.square())


class LotkaVolterra(nn.Module):
    """The full model, split into what is known (``known``) and what the UDE must learn."""

    def __init__(self, data: LotkaVolterraData):
        super().__init__()
        self.data = data

    def known(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.data.alpha * u[..., 0], -self.data.delta * u[..., 1]], dim=-1)

    def interaction(self, u: torch.Tensor) -> torch.Tensor:
        product = u[..., 0] * u[..., 1]
        return torch.stack([-self.data.beta * product, self.data.gamma * product], dim=-1)

    def forward(self, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.known(t, u) + self.interaction(u)


class _Sparse(nn.Module):
    """``features(u) @ xi``: the equations sparse regression recovered."""

    def __init__(self, xi: torch.Tensor, degree: int):
        super().__init__()
        self.xi, self.degree = xi, degree

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        features, _ = polynomial_library(u.reshape(-1, u.shape[-1]), self.degree)
        return (features @ self.xi).reshape(u.shape)


class UDETask:
    def __init__(self, config: UDELotkaVolterraConfig, device: torch.device, dtype: torch.dtype):
        data = config.data
        self.truth = LotkaVolterra(data)
        self.t = torch.linspace(0, data.t_end, data.points, device=device, dtype=dtype)
        self.u0 = torch.tensor([data.u0], device=device, dtype=dtype)
        with torch.no_grad():
            clean = odeint(self.truth, self.u0, self.t, rtol=1e-10, atol=1e-12)[:, 0]
        generator = torch.Generator().manual_seed(config.train.seed)
        noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
        self.clean = clean
        self.observed = clean + data.noise * clean.mean(0) * noise.to(device=device, dtype=dtype)

        torch.manual_seed(config.train.seed)
        sizes = [2] + [config.model.hidden] * config.model.layers
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), GaussianRBF()]
        network = nn.Sequential(*layers, nn.Linear(sizes[-1], 2))
        solver = config.solver
        self.model = UDE(
            self.truth.known, network, gradient=solver.gradient, **solver.odeint_kwargs()
        ).to(device, dtype)
        self.num_examples = 1
        self.config = config

    def nfe(self) -> int:
        return self.model.nfe

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        # the paper's loss: the sum of squared errors over the trajectory
        return StepOutput(loss=(model(self.u0, self.t)[:, 0] - self.observed).square().sum())

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        fit = model(self.u0, self.t)[:, 0]
        return {"val_loss": (fit - self.observed).square().sum().item()}

    def recover(self, model: UDE) -> tuple[torch.Tensor, list[str]]:
        """Sparse regression of the network's output along the fitted trajectory (the part of
        it that stayed finite, should the model have blown up)."""
        dense_t = torch.linspace(0, self.config.data.t_end, 200).to(self.t)
        path = _solve_or_nan(model.field, self.u0, dense_t)
        with torch.no_grad():
            target = model.network(path)
            finite = (path.isfinite() & target.isfinite()).all(dim=-1)
            features, names = polynomial_library(path[finite], self.config.model.library_degree)
            xi = stlsq(features, target[finite], self.config.model.threshold)
        return xi, names

    def extrapolations(self, model: UDE, xi: torch.Tensor) -> dict[str, torch.Tensor]:
        """Truth, UDE with its network, and the recovered equations, on [0, t_extrapolate].

        A model that blows up (the network far from its data may) is kept up to where its solve
        stopped and is NaN after that.
        """
        times = torch.linspace(0, self.config.data.t_extrapolate, 1000).to(self.t)
        recovered = _Sparse(xi, self.config.model.library_degree)
        fields = {
            "truth": self.truth,
            "network": model.field,
            "recovered": lambda t, u: self.truth.known(t, u) + recovered(u),
        }
        paths = {"times": times}
        for name, field in fields.items():
            paths[name] = _solve_or_nan(field, self.u0, times)
        return paths


def _solve_or_nan(field: Any, u0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        try:
            path = odeint(field, u0, times, method="dopri5", rtol=1e-8, atol=1e-10,
                          options={"max_num_steps": MAX_STEPS_PER_OUTPUT})  # fmt: skip
        except SolverError as failure:
            reached = failure.partial if torch.is_tensor(failure.partial) else u0[None]
            path = torch.full((len(times), *u0.shape), torch.nan).to(u0)
            path[: len(reached)] = reached
    return path[:, 0]


@register
class UDELotkaVolterra(Experiment):
    name = "ude-lotka-volterra"
    description = "a UDE learns Lotka-Volterra's missing terms; sparse regression recovers them"
    config_class = UDELotkaVolterraConfig

    def build(
        self, config: UDELotkaVolterraConfig, device: torch.device, dtype: torch.dtype
    ) -> UDETask:
        return UDETask(config, device, dtype)

    def final_metrics(self, task: UDETask, config: UDELotkaVolterraConfig) -> dict[str, Any]:
        model = task.model.eval()
        with torch.no_grad():
            true_missing = task.truth.interaction(task.clean)
            learned_missing = model.network(task.clean)
        xi, names = task.recover(model)
        product = names.index("u1*u2")
        spurious = (xi != 0).sum().item() - (xi[product] != 0).sum().item()
        paths = task.extrapolations(model, xi)
        fit = _solve_or_nan(model.field, task.u0, task.t)
        scale = paths["truth"].abs().max()

        def max_error(name: str) -> float:
            # a model that blew up (NaN past its failure) has an infinite error
            error = (paths[name] - paths["truth"]).abs().nan_to_num(nan=torch.inf)
            return (error.max() / scale).item()

        return {
            "fit_rmse": (fit - task.clean).square().mean().sqrt().nan_to_num(nan=torch.inf).item(),
            "missing_terms_rel_error": (
                (learned_missing - true_missing).norm() / true_missing.norm()
            ).item(),
            "recovered_u1u2_in_du1": xi[product, 0].item(),
            "recovered_u1u2_in_du2": xi[product, 1].item(),
            "true_u1u2_in_du1": -config.data.beta,
            "true_u1u2_in_du2": config.data.gamma,
            "spurious_terms": spurious,
            "extrapolation_max_rel_error_recovered": max_error("recovered"),
            "extrapolation_max_rel_error_network": max_error("network"),
        }

    def plot(self, task: UDETask, config: UDELotkaVolterraConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        plt = plotting.plt
        model = task.model.eval()
        xi, _ = task.recover(model)
        paths = {k: v.cpu() for k, v in task.extrapolations(model, xi).items()}
        figure, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
        for i, ax in enumerate(axes):
            ax.plot(paths["times"], paths["truth"][:, i], color="0.4", lw=2.5, label="truth")
            ax.plot(paths["times"], paths["network"][:, i], color="C0", lw=1, label="UDE (network)")
            ax.plot(
                paths["times"], paths["recovered"][:, i], "--", color="C3", lw=1,
                label="recovered equations",
            )  # fmt: skip
            ax.plot(task.t.cpu(), task.observed[:, i].cpu(), ".", color="k", ms=4, label="data")
            ax.axvline(config.data.t_end, color="0.5", ls=":")
            ax.set_ylabel(NAMES[i])
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8, loc="upper right")
        axes[0].set_title("extrapolation beyond the data (dotted line: end of the data)")
        axes[1].set_xlabel("t")
        return [plotting._save(figure, plots_dir / "extrapolation.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        return (
            f"recovered du1 = ... {metrics['recovered_u1u2_in_du1']:+.3f} u1 u2, du2 = ... "
            f"{metrics['recovered_u1u2_in_du2']:+.3f} u1 u2 (true {metrics['true_u1u2_in_du1']:+g}, "
            f"{metrics['true_u1u2_in_du2']:+g}; "
            f"{metrics['spurious_terms']} spurious terms); extrapolation to t = 50: "
            f"{metrics['extrapolation_max_rel_error_recovered']:.3g} (recovered) vs "
            f"{metrics['extrapolation_max_rel_error_network']:.3g} (network)"
        )
