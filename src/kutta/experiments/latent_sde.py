"""Latent SDE (Li et al. 2020) on torchsde's irregular sine toy.

Data: ``y = 0.8 sin(2 pi t)`` at 16 sorted times drawn from U(0.4, 1.6). Prior: the
Ornstein-Uhlenbeck process ``dy = theta (mu - y) dt + sigma dW`` (theta 1, mu 0, sigma 0.5) started
from its stationary law. Posterior: the same diffusion with a learned drift, an MLP of
``(sin t, cos t, y)``, and a learned Gaussian ``q(y0)``. The loss is the negative ELBO: a Laplace
log-likelihood (scale 0.05) of the data under posterior sample paths, minus the KL divergence
of the paths (``sdeint(..., logqp=True)``) and of ``y0``, its weight annealed linearly from 0
to 1 over ``train.kl_anneal`` steps. Paths are solved from t = 0 to 2.

Metrics: the data's log-likelihood averaged over posterior samples, the ELBO, and how many
data points fall inside the posterior's central 90 % band (coverage), and the mean distance of
the posterior median from the data (a wide band alone would also cover the data).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kutta.errors import InvalidArgumentError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import register
from kutta.sde import SDEIto, sdeint
from kutta.train.config import TrainConfig
from kutta.train.trainer import StepOutput


@dataclasses.dataclass
class LatentSDEData:
    num_points: int = 16
    t_low: float = 0.4
    t_high: float = 1.6
    t_end: float = 2.0


@dataclasses.dataclass
class LatentSDEModel:
    hidden: int = 64
    theta: float = 1.0
    mu: float = 0.0
    sigma: float = 0.5
    likelihood_scale: float = 0.05
    #: steps over which the KL weight grows linearly from 0 to 1
    kl_anneal: int = 100
    #: posterior samples drawn for the metrics
    eval_samples: int = 512


@dataclasses.dataclass
class LatentSDESolver:
    method: str = "euler"
    dt: float = 0.01

    def __post_init__(self) -> None:
        if not self.dt > 0:
            raise InvalidArgumentError(f"solver.dt must be positive, got {self.dt}")


def _default_train() -> TrainConfig:
    # batch_size = posterior sample paths per step
    return TrainConfig(steps=400, batch_size=128, lr=1e-2, log_every=10, checkpoint_every=100)


@dataclasses.dataclass
class LatentSDEConfig:
    data: LatentSDEData = dataclasses.field(default_factory=LatentSDEData)
    model: LatentSDEModel = dataclasses.field(default_factory=LatentSDEModel)
    solver: LatentSDESolver = dataclasses.field(default_factory=LatentSDESolver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


class LatentSDE(SDEIto):
    """Posterior drift ``f`` (learned), shared diffusion ``g = sigma``, prior drift ``h`` (OU).

    Example:
        >>> sde = LatentSDE(hidden=8)
        >>> ys, kl = sde(torch.linspace(0, 1, 5), batch_size=3, dt=0.1)
        >>> ys.shape, kl.shape
        (torch.Size([5, 3, 1]), torch.Size([3]))
    """

    def __init__(self, hidden: int = 64, theta: float = 1.0, mu: float = 0.0, sigma: float = 0.5):
        super().__init__(noise_type="diagonal")
        self.theta, self.mu, self.sigma = theta, mu, sigma
        stationary_logvar = math.log(sigma**2 / (2 * theta))
        self.register_buffer("py0_mean", torch.tensor([[mu]]))
        self.register_buffer("py0_logvar", torch.tensor([[stationary_logvar]]))
        self.net = nn.Sequential(
            nn.Linear(3, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 1),
        )
        # Start from the prior: a zero last layer makes the posterior drift vanish.
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.qy0_mean = nn.Parameter(torch.tensor([[mu]]))
        self.qy0_logvar = nn.Parameter(torch.tensor([[stationary_logvar]]))

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device).expand_as(y)
        return self.net(torch.cat([torch.sin(t), torch.cos(t), y], dim=-1))

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full_like(y, self.sigma)

    def h(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.theta * (self.mu - y)

    def forward(
        self, ts: torch.Tensor, batch_size: int, dt: float, method: str = "euler"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior sample paths at ``ts`` (T, B, 1) and each path's KL to the prior (B,)."""
        std = (0.5 * self.qy0_logvar).exp()
        y0 = self.qy0_mean + std * torch.randn(batch_size, 1, dtype=std.dtype, device=std.device)
        kl_y0 = (
            0.5
            * (
                self.py0_logvar
                - self.qy0_logvar
                + (self.qy0_logvar.exp() + (self.qy0_mean - self.py0_mean) ** 2)
                / self.py0_logvar.exp()
                - 1
            ).sum()
        )
        ys, log_ratio = sdeint(self, y0, ts, method=method, dt=dt, logqp=True)
        return ys, kl_y0 + log_ratio.sum(0)


def sine_data(config: LatentSDEData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Times (N,) sorted in [t_low, t_high) and ``0.8 sin(2 pi t)`` (N, 1), float64."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(config.num_points, generator=generator, dtype=torch.float64)
    t = (config.t_low + (config.t_high - config.t_low) * u).sort().values
    return t, (0.8 * torch.sin(2 * math.pi * t)).unsqueeze(-1)


class LatentSDETask:
    def __init__(self, config: LatentSDEConfig, device: torch.device, dtype: torch.dtype):
        m = config.model
        t, y = sine_data(config.data, config.train.seed)
        to = dict(device=device, dtype=dtype)
        self.t, self.y = t.to(**to), y.to(**to)
        ends = torch.tensor([0.0, config.data.t_end], **to)
        self.ts = torch.cat([ends[:1], self.t, ends[1:]])  # solve from 0 to t_end
        self.config = config
        self.model = LatentSDE(m.hidden, m.theta, m.mu, m.sigma).to(**to)
        self.num_examples = config.train.batch_size
        self.steps_taken = 0
        self._calls = 0
        self.model.net.register_forward_pre_hook(self._count_call)

    def _count_call(self, module: nn.Module, args: Any) -> None:
        self._calls += 1

    def nfe(self) -> int:
        return self._calls

    def begin_step(self, step: int) -> None:
        """The Trainer's step count before this loss: the schedules follow it, also on resume."""
        self.steps_taken = step + 1  # counting the step about to be taken

    def log_likelihood(self, ys: torch.Tensor) -> torch.Tensor:
        """Laplace log-density of the data for each path: (B,)."""
        scale = self.config.model.likelihood_scale
        data_paths = ys[1:-1]  # (N, B, 1)
        log_density = -(data_paths - self.y[:, None]).abs() / scale - math.log(2 * scale)
        return log_density.sum(dim=(0, 2))

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        self._calls = 0
        weight = min(1.0, self.steps_taken / max(self.config.model.kl_anneal, 1))
        s = self.config.solver
        ys, kl = model(self.ts, len(indices), s.dt, s.method)
        return StepOutput(loss=-(self.log_likelihood(ys) - weight * kl).mean())

    def scores(self, model: nn.Module, samples: int) -> dict[str, float]:
        s = self.config.solver
        ys, kl = model(self.ts, samples, s.dt, s.method)
        log_likelihood = self.log_likelihood(ys)
        low, high = torch.quantile(ys[1:-1, :, 0], torch.tensor([0.05, 0.95]).to(ys), dim=1)
        inside = (self.y[:, 0] >= low) & (self.y[:, 0] <= high)
        median = ys[1:-1, :, 0].median(dim=1).values
        return {
            "median_abs_error": (median - self.y[:, 0]).abs().mean().item(),
            "log_likelihood": log_likelihood.mean().item(),
            "elbo": (log_likelihood - kl).mean().item(),
            "kl": kl.mean().item(),
            "coverage_90": inside.double().mean().item(),
        }

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        metrics = self.scores(model, self.config.model.eval_samples)
        return {"val_loss": -metrics["elbo"], **metrics}


@register
class LatentSDEExperiment(Experiment):
    name = "latent-sde"
    description = "latent SDE on torchsde's 16-point sine (log-likelihood, posterior coverage)"
    config_class = LatentSDEConfig

    def build(
        self, config: LatentSDEConfig, device: torch.device, dtype: torch.dtype
    ) -> LatentSDETask:
        return LatentSDETask(config, device, dtype)

    def final_metrics(self, task: LatentSDETask, config: LatentSDEConfig) -> dict[str, float]:
        with torch.no_grad():
            return task.scores(task.model.eval(), config.model.eval_samples)

    def plot(self, task: LatentSDETask, config: LatentSDEConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        grid = torch.linspace(0, config.data.t_end, 200, dtype=task.t.dtype, device=task.t.device)
        with torch.no_grad():
            ys, _ = task.model(grid, 256, config.solver.dt, config.solver.method)
        paths = ys[..., 0].cpu()
        low, high = torch.quantile(paths, torch.tensor([0.05, 0.95], dtype=paths.dtype), dim=1)
        figure, ax = plotting.plt.subplots(figsize=(7, 4))
        ax.fill_between(grid.cpu(), low, high, color="C0", alpha=0.25, label="posterior 5-95 %")
        ax.plot(grid.cpu(), paths[:, :10], color="C0", lw=0.6, alpha=0.7)
        ax.plot(task.t.cpu(), task.y[:, 0].cpu(), "o", color="k", ms=4, label="data")
        ax.set_xlabel("t")
        ax.set_title("latent SDE posterior sample paths")
        ax.legend(fontsize=8)
        return [plotting._save(figure, plots_dir / "posterior.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        return (
            f"log-likelihood {metrics['log_likelihood']:.2f} (16 points, Laplace scale 0.05), "
            f"ELBO {metrics['elbo']:.2f}; {metrics['coverage_90']:.0%} of the data inside the "
            f"posterior's 90 % band"
        )
