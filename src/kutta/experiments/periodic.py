"""Rubanova et al.'s periodic toy: Latent ODE vs ODE-RNN vs a GRU given time gaps.

Data (Rubanova et al. 2019): one time grid shared by all series, ``t = {0}`` plus 99 sorted
draws from U(0, 5); each series is ``y = sin(2 pi f t) + 1 + e0`` with ``f ~ U(0.4, 0.8)`` and
``e0 ~ N(0, 0.1^2)`` per series, plus observation noise ``0.01 U[0, 1)`` (not on the first
point). 1000 series, 80 % train (of which ``data.val_fraction`` validates) and 20 % test.

Tasks: *interpolation* observes a random 50 of each series' 100 points (different points per
series) and predicts all 100; *extrapolation* observes the first 50 and predicts the last 50.
Each observed batch is the full grid with a mask, so every model walks the same grid:

* ``latent``: :class:`kutta.models.LatentODE` (ODE-RNN encoder over the observed points, ELBO
  loss); predictions decode the posterior mean. In interpolation the encoder runs backwards,
  as in Rubanova et al., so that its summary sits at t = 0 where z0 lives. In extrapolation it
  runs *forwards* (``model.extrapolation_encoder``), a departure from the paper: z0 lives at
  the first target, so a backward encoder's summary (at t = 0) had to be carried across the
  whole observed half by the encoder's own ODE, with no observation to correct it, and the
  Latent ODE's error was largest at the start of the prediction window (median test MSE 3x
  the ODE-RNN's over seeds 0-2, see benchmarks/README.md). Run forwards, the summary is at the
  last observation, one grid interval before z0: the information the ODE-RNN has there too.
  Median over seeds 0-2 (1000 steps): 0.00133 -> 0.000559, ODE-RNN 0.000438; the remaining
  gap was spread over the window (slower training), not at its start, and the growing target
  window (below) closed it: 0.000273 against 0.000476. The ELBO's KL term is
  annealed as in Rubanova et al.'s ``run_models.py``: weight 0 for the first 10 epochs, then
  ``1 - 0.99 ** (epoch - 10)``. Without it the KL term, with the posterior noise it keeps up,
  holds the model on a predict-the-mean plateau (MSE ~0.48) for hundreds of steps at some
  seeds (seed 1: through step 350 of 1000 in interpolation). As in Rubanova et al.'s
  code, the latent ODE starts at the first time to predict: t = 0 in interpolation, the start
  of the second half in extrapolation (the encoder's state is carried there by its own ODE;
  earlier times get no Latent ODE prediction, NaN). Starting at t = 0 instead would make the
  latent ODE integrate through the observed half, with no loss there, before the first
  target: a horizon twice the ODE-RNN's, slower to train and less accurate
  (``model.z0_at_first_target=false``).
* ``odernn``: :class:`kutta.models.ODERNN`; the prediction at each time reads out the state
  evolved there *before* that time's update (:meth:`~kutta.models.ODERNN.predict`).
* ``gru``: :class:`kutta.models.GRUDelta`, a GRU stepping through the grid with inputs
  (value * mask, mask, time gap), the classic "RNN with Δt" baseline, read out the same way.

No model predicts a value from a state that has already seen it: otherwise the recurrent models
would copy the observed half of the interpolation targets (Rubanova et al. shift the ODE-RNN's
outputs by one step for this reason), while the Latent ODE reconstructs every point from z0.

All models train side by side on the same batches (no shared parameters), on the same target
window, which grows over the first 30 % of the steps from 20 % of each mode's target span to all
of it (``model.horizon_warmup``, ``model.horizon_start``). Why: fitting the whole span (up to
four periods from one z0) from the first step held the Latent ODE on the predict-the-mean
plateau for 400-900 steps at some seeds; a short horizon first is the usual remedy for long
neural-ODE fits. Rubanova et al. do not need it: they train 500 epochs (~8000 steps), the
check in benchmarks/bench_experiments.py 1500. The recurrent models predict one step ahead and
barely need it, but get the same window so that every model sees the same targets. The test MSE is over every target point;
for interpolation also over the unobserved points alone.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kutta.data import IrregularBatch
from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.experiments.base import Experiment
from kutta.experiments.registry import register
from kutta.models import ODERNN, AutonomousMLP, GRUDelta, LatentODE, SolverOptions
from kutta.models.latent_ode import ENCODER_DIRECTIONS
from kutta.train.config import SolverConfig, TrainConfig
from kutta.train.trainer import StepOutput

MODES = ("interpolation", "extrapolation")
MODE_CHOICES = (*MODES, "both")
KINDS = ("latent", "odernn", "gru")


@dataclasses.dataclass
class PeriodicData:
    num_series: int = 1000
    num_points: int = 100
    t_end: float = 5.0
    noise_weight: float = 0.01
    test_fraction: float = 0.2
    #: part of the training series held out to validate
    val_fraction: float = 0.1
    #: points observed per series in interpolation mode
    observed: int = 50
    #: "interpolation", "extrapolation" or "both"
    mode: str = "both"

    def __post_init__(self) -> None:
        if self.mode not in MODE_CHOICES:
            raise UnknownNameError("mode", self.mode, MODE_CHOICES)
        if self.num_points < 4 or not 1 <= self.observed <= self.num_points:
            raise InvalidArgumentError("data.num_points must be >= 4, 1 <= observed <= num_points")
        if not (0 < self.test_fraction < 1 and 0 <= self.val_fraction < 1):
            raise InvalidArgumentError("data.test_fraction in (0, 1), val_fraction in [0, 1)")
        if self.t_end <= 0 or self.noise_weight < 0:
            raise InvalidArgumentError("data.t_end must be > 0 and data.noise_weight >= 0")


@dataclasses.dataclass
class PeriodicModel:
    # Rubanova et al.'s command for this toy: 10 latents, a 20-dim ODE-RNN encoder, latent
    # vector field with 100 hidden units, linear decoder, 3 posterior samples per series.
    latent_dim: int = 10
    encoder_hidden: int = 20
    #: width of the decoder's hidden layer (0: linear)
    decoder_hidden: int = 0
    #: width of the latent vector field's hidden layer
    dynamics_hidden: int = 100
    #: width of the encoder's vector field's hidden layer (0: the model's default,
    #: ``encoder_hidden``). 100 as in Rubanova et al.'s code (``--units``): with 20, the
    #: interpolation Latent ODE lost to the ODE-RNN (benchmarks/README.md, section 0)
    encoder_func_hidden: int = 100
    #: width of the hidden layer from the encoder's summary to q(z0 | x) (0: linear); 100 as
    #: Rubanova et al.'s ``transform_z0``
    posterior_hidden: int = 100
    #: extrapolation: carry the encoder's summary from t = 0 to the first target by the
    #: encoder's ODE (true), or place q(z0 | x) read at t = 0 there as Rubanova et al. (false)
    extrapolation_carry: bool = True
    #: the Latent ODE's encoder direction in extrapolation: "backward" (Rubanova et al.: its
    #: summary at t = 0) or "forward" (its summary at the last observation, next to z0's time)
    extrapolation_encoder: str = "forward"
    #: posterior samples per series in the training ELBO
    samples: int = 3
    #: observation std of the Latent ODE's Gaussian likelihood (Rubanova et al. use 0.01)
    obs_std: float = 0.01
    #: hidden size of the ODE-RNN and of the GRU baseline
    rnn_hidden: int = 20
    #: start the latent ODE at the first time to predict (Rubanova et al.'s code), not at t = 0
    z0_at_first_target: bool = True
    #: the latent ODE's solver, Rubanova et al.'s decoder's; the encoders and the ODE-RNN use
    #: ``solver``, which steps once per interval of the grid. "" uses ``solver`` throughout.
    latent_method: str = "dopri5"
    latent_rtol: float = 1e-3
    latent_atol: float = 1e-4
    #: Rubanova et al.'s KL annealing: weight 0 for this many epochs, then
    #: ``1 - kl_decay ** (epoch - kl_warmup_epochs)``. 0 and 0: the full ELBO throughout.
    kl_warmup_epochs: int = 10
    kl_decay: float = 0.99
    #: the horizon curriculum: every model trains on a target window that grows linearly,
    #: from ``horizon_start`` of its length to all of it, over this fraction of the training
    #: steps (0: the whole window from the first step)
    horizon_warmup: float = 0.3
    horizon_start: float = 0.2

    def __post_init__(self) -> None:
        if not (0 <= self.horizon_warmup <= 1 and 0 < self.horizon_start <= 1):
            raise InvalidArgumentError(
                "model.horizon_warmup must be in [0, 1] and model.horizon_start in (0, 1]"
            )
        if self.extrapolation_encoder not in ENCODER_DIRECTIONS:
            raise UnknownNameError(
                "model.extrapolation_encoder", self.extrapolation_encoder, ENCODER_DIRECTIONS
            )


def _default_solver() -> SolverConfig:
    # rk4 without a step size: one step per interval of the (dense, shared) time grid.
    return SolverConfig(method="rk4")


def _default_train() -> TrainConfig:
    return TrainConfig(
        steps=300,
        batch_size=50,
        lr=1e-2,
        schedule="cosine",
        eval_every=50,
        log_every=5,
        checkpoint_every=50,
    )


@dataclasses.dataclass
class PeriodicConfig:
    data: PeriodicData = dataclasses.field(default_factory=PeriodicData)
    model: PeriodicModel = dataclasses.field(default_factory=PeriodicModel)
    solver: SolverConfig = dataclasses.field(default_factory=_default_solver)
    train: TrainConfig = dataclasses.field(default_factory=_default_train)


def periodic_data(config: PeriodicData, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared grid (T,) and the series (N, T, 1), float64, as Rubanova et al. describe.

    Example:
        >>> t, y = periodic_data(PeriodicData(num_series=3), seed=0)
        >>> t.shape, y.shape, t[0].item()
        (torch.Size([100]), torch.Size([3, 100, 1]), 0.0)
    """
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(config.num_points - 1, generator=generator, dtype=torch.float64)
    t = torch.cat([torch.zeros(1, dtype=torch.float64), (draws * config.t_end).sort().values])
    n = config.num_series
    frequency = 0.4 + 0.4 * torch.rand(n, 1, generator=generator, dtype=torch.float64)
    offset = 0.1 * torch.randn(n, 1, generator=generator, dtype=torch.float64)
    y = torch.sin(2 * math.pi * frequency * t) + 1 + offset
    noise = config.noise_weight * torch.rand(n, len(t), generator=generator, dtype=torch.float64)
    noise[:, 0] = 0
    return t, (y + noise).unsqueeze(-1)


def observation_masks(
    mode: str, num_series: int, num_points: int, observed: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(observed (N, T), target (N, T)) bool masks for ``mode``.

    Interpolation: a random ``observed`` points per series, target all; extrapolation: the
    first half observed, the second half the target.
    """
    if mode == "interpolation":
        scores = torch.rand(num_series, num_points, generator=generator)
        chosen = scores.argsort(dim=1)[:, :observed]
        seen = torch.zeros(num_series, num_points, dtype=torch.bool).scatter(1, chosen, True)
        return seen, torch.ones_like(seen)
    half = torch.arange(num_points) < num_points // 2
    seen = half.expand(num_series, -1)
    return seen.clone(), (~seen).clone()


class PeriodicTask:
    """The series, their observation masks per mode, and three models per mode."""

    def __init__(self, config: PeriodicConfig, device: torch.device, dtype: torch.dtype):
        data, m = config.data, config.model
        t, y = periodic_data(data, config.train.seed)
        # The series are i.i.d.; a fixed permutation picks the test, validation and train rows.
        order = torch.randperm(data.num_series, generator=torch.Generator().manual_seed(1))
        num_test = int(round(data.test_fraction * data.num_series))
        num_val = int(round(data.val_fraction * (data.num_series - num_test)))
        self.rows = {
            "test": order[:num_test],
            "val": order[num_test : num_test + num_val],
            "train": order[num_test + num_val :],
        }
        self.modes = MODES if data.mode == "both" else (data.mode,)
        generator = torch.Generator().manual_seed(config.train.seed + 1)
        self.masks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        #: grid index where each mode's latent ODE starts (every series shares its targets)
        self.latent_start: dict[str, int] = {}
        self.first_target: dict[str, int] = {}
        self.horizon_steps = round(m.horizon_warmup * config.train.steps)
        self.horizon_start = m.horizon_start
        for mode in self.modes:
            seen, target = observation_masks(
                mode, data.num_series, data.num_points, data.observed, generator
            )
            self.masks[mode] = (seen.to(device), target.to(device))
            first_target = int(target.any(0).nonzero()[0])
            self.first_target[mode] = first_target
            self.latent_start[mode] = first_target if m.z0_at_first_target else 0
        self.t = t.to(device=device, dtype=dtype)
        self.grid_times: list[float] = self.t.tolist()
        self.y = y.to(device=device, dtype=dtype)
        kwargs = config.solver.odeint_kwargs()
        solver = dict(
            method=kwargs["method"],
            rtol=kwargs["rtol"],
            atol=kwargs["atol"],
            options=kwargs["options"],
            gradient=config.solver.gradient,
        )
        latent_solver = None
        if m.latent_method:
            latent_solver = SolverOptions(
                m.latent_method, m.latent_rtol, m.latent_atol, gradient=config.solver.gradient
            )
        models: dict[str, nn.Module] = {}
        for mode in self.modes:
            models[f"{mode}_latent"] = LatentODE(
                1,
                m.latent_dim,
                m.encoder_hidden,
                m.decoder_hidden,
                dynamics=AutonomousMLP(m.latent_dim, (m.dynamics_hidden,)),
                encoder_func=(
                    AutonomousMLP(m.encoder_hidden, (m.encoder_func_hidden,))
                    if m.encoder_func_hidden
                    else None
                ),
                posterior_hidden=m.posterior_hidden,
                carry_to_z0_time=m.extrapolation_carry or mode != "extrapolation",
                encoder_direction=(
                    m.extrapolation_encoder if mode == "extrapolation" else "backward"
                ),
                obs_std=m.obs_std,
                # z0 at a time common to all series, as Rubanova et al.
                z0_time=float(t[self.latent_start[mode]]),
                latent_solver=latent_solver,
                **solver,
            )
            models[f"{mode}_odernn"] = ODERNN(1, m.rnn_hidden, output_channels=1, **solver)
            models[f"{mode}_gru"] = GRUDelta(1, m.rnn_hidden, output_channels=1)
        self.model = nn.ModuleDict(models).to(device=device, dtype=dtype)
        self.samples = m.samples
        self.num_examples = len(self.rows["train"])
        self.kl_warmup_epochs, self.kl_decay = m.kl_warmup_epochs, m.kl_decay
        self.steps_per_epoch = max(self.num_examples // config.train.batch_size, 1)
        self.steps_taken = 0
        self._calls = 0
        for net in self.model.values():
            for field in _vector_fields(net):
                field.register_forward_pre_hook(self._count_call)

    def _count_call(self, module: nn.Module, args: Any) -> None:
        self._calls += 1

    def nfe(self) -> int:
        return self._calls

    def begin_step(self, step: int) -> None:
        """The Trainer's step count before this loss: the schedules follow it, also on resume."""
        self.steps_taken = step + 1  # counting the step about to be taken

    def batch(
        self, rows: torch.Tensor, mask: torch.Tensor, start: int = 0, end: int | None = None
    ) -> IrregularBatch:
        """Series ``rows`` on the grid from index ``start`` up to ``end``, observed where
        ``mask`` (N, T) is True."""
        values = self.y[rows, start:end]
        mask = mask[rows, start:end].unsqueeze(-1)
        times = self.t[start:end].expand(len(rows), -1)
        lengths = torch.full((len(rows),), len(times[0]), dtype=torch.long, device=values.device)
        return IrregularBatch(times, torch.where(mask, values, 0.0), mask, lengths)

    def observed_points(self, rows: torch.Tensor, mask: torch.Tensor) -> IrregularBatch:
        """Series ``rows`` at their observed times only (every series observes as many).

        The Latent ODE's encoder reads these: the same recursion as on the masked grid (no
        update at an unobserved time), without the ODE steps at the unobserved times."""
        seen = mask[rows]
        count = int(seen[0].sum())
        positions = seen.nonzero()[:, 1].view(len(rows), count)
        times = self.t[positions]
        values = self.y[rows].gather(1, positions.unsqueeze(-1))
        lengths = torch.full((len(rows),), count, dtype=torch.long, device=values.device)
        return IrregularBatch(times, values, torch.ones_like(values, dtype=torch.bool), lengths)

    def predict(
        self,
        model: nn.Module,
        name: str,
        rows: torch.Tensor,
        mask: torch.Tensor,
        end: int | None = None,
    ) -> torch.Tensor:
        """Model ``name``'s prediction at every grid time (up to index ``end``) for series
        ``rows`` observed where ``mask`` (N, T) is True: (B, T, 1); NaN before the Latent ODE's
        start."""
        net = model[name]
        if name.endswith("latent"):
            start = self.latent_start[name.removesuffix("_latent")]
            posterior = net.encode(self.observed_points(rows, mask))
            decoded = net.decode(posterior.mean.unsqueeze(0), posterior.t0, self.t[start:end])[0]
            before = decoded.new_full((len(rows), start, decoded.shape[-1]), float("nan"))
            return torch.cat([before, decoded], dim=1)
        # The recurrent models predict each time from their state before its update: an
        # observed value is never read out of a state that has seen it (Rubanova et al. shift
        # the ODE-RNN's outputs by one step for the same reason).
        return net.predict(self.batch(rows, mask, end=end))

    def kl_weight(self) -> float:
        """The ELBO's KL weight at the current step (Rubanova et al.'s annealing by epochs)."""
        epoch = (self.steps_taken - 1) // self.steps_per_epoch
        if epoch < self.kl_warmup_epochs:
            return 0.0
        return 1.0 - self.kl_decay ** (epoch - self.kl_warmup_epochs)

    def horizon_end(self, mode: str) -> int:
        """Grid index that ends this step's target window in ``mode`` (the horizon curriculum)."""
        if self.horizon_steps <= 0 or self.steps_taken >= self.horizon_steps:
            return len(self.t)
        first = self.first_target[mode]
        fraction = self.horizon_start + (1 - self.horizon_start) * (
            self.steps_taken / self.horizon_steps
        )
        times = self.grid_times  # host floats: no device sync in the training step
        horizon = times[first] + fraction * (times[-1] - times[first])
        return max(bisect.bisect_right(times, horizon), first + 1)

    def loss(self, model: nn.Module, indices: torch.Tensor) -> StepOutput:
        self._calls = 0
        rows = self.rows["train"][indices.cpu()].to(self.y.device)
        total = torch.zeros((), device=self.y.device, dtype=self.y.dtype)
        for mode in self.modes:
            seen, target = self.masks[mode]
            end = self.horizon_end(mode)
            for kind in KINDS:
                name = f"{mode}_{kind}"
                if kind == "latent":
                    elbo = model[name].elbo(
                        self.observed_points(rows, seen),
                        self.batch(rows, target, start=self.latent_start[mode], end=end),
                        n_samples=self.samples,
                        kl_weight=self.kl_weight(),
                    )
                    total = total + elbo.loss()
                else:
                    prediction = self.predict(model, name, rows, seen, end)
                    error = (prediction - self.y[rows, :end]).squeeze(-1)
                    total = total + error[target[rows, :end]].pow(2).mean()
        return StepOutput(loss=total)

    def mse(self, model: nn.Module, split: str) -> dict[str, float]:
        rows = self.rows[split].to(self.y.device)
        metrics = {}
        for mode in self.modes:
            seen, target = (mask[rows] for mask in self.masks[mode])
            for kind in KINDS:
                name = f"{mode}_{kind}"
                prediction = self.predict(model, name, rows, self.masks[mode][0])
                error = (prediction - self.y[rows]).squeeze(-1).pow(2)
                metrics[f"{split}_mse_{name}"] = error[target].mean().item()
                if mode == "interpolation":
                    metrics[f"{split}_mse_unobserved_{name}"] = error[target & ~seen].mean().item()
        return metrics

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        split = "val" if len(self.rows["val"]) else "train"
        metrics = self.mse(model, split)
        total = sum(metrics[f"{split}_mse_{mode}_{kind}"] for mode in self.modes for kind in KINDS)
        return {"val_loss": total, **metrics}


def _vector_fields(net: nn.Module) -> list[nn.Module]:
    if isinstance(net, LatentODE):
        return [net.encoder_func, net.dynamics]
    if isinstance(net, ODERNN):
        return [net.func]
    return []


@register
class Periodic(Experiment):
    name = "periodic"
    description = "Rubanova's periodic toy: Latent ODE vs ODE-RNN vs GRU-dt (interp./extrap. MSE)"
    config_class = PeriodicConfig

    def build(
        self, config: PeriodicConfig, device: torch.device, dtype: torch.dtype
    ) -> PeriodicTask:
        return PeriodicTask(config, device, dtype)

    def final_metrics(self, task: PeriodicTask, config: PeriodicConfig) -> dict[str, float]:
        with torch.no_grad():
            return task.mse(task.model.eval(), "test")

    def plot(self, task: PeriodicTask, config: PeriodicConfig, plots_dir: Path) -> list[Path]:
        from kutta.experiments import plotting

        rows = task.rows["test"][:3].to(task.y.device)
        figure, axes = plotting.plt.subplots(
            len(task.modes), 3, figsize=(13, 3.2 * len(task.modes)), squeeze=False
        )
        t = task.t.cpu()
        with torch.no_grad():
            for i, mode in enumerate(task.modes):
                seen = task.masks[mode][0][rows]
                predictions = {
                    kind: task.predict(
                        task.model.eval(), f"{mode}_{kind}", rows, task.masks[mode][0]
                    ).cpu()
                    for kind in KINDS
                }
                for j, ax in enumerate(axes[i]):
                    truth = task.y[rows[j], :, 0].cpu()
                    ax.plot(t, truth, ".", color="0.75", ms=3, label="data")
                    ax.plot(
                        t[seen[j].cpu()],
                        truth[seen[j].cpu()],
                        ".",
                        color="k",
                        ms=4,
                        label="observed",
                    )
                    for k, (kind, value) in enumerate(predictions.items()):
                        ax.plot(t, value[j, :, 0], color=f"C{k}", lw=1.2, label=kind)
                    ax.set_title(f"{mode}: test series {j}")
                    ax.set_xlabel("t")
                axes[i][0].legend(fontsize=7)
        return [plotting._save(figure, plots_dir / "predictions.png")]

    def summary(self, metrics: dict[str, Any]) -> str:
        parts = []
        for mode in MODES:
            if f"test_mse_{mode}_latent" in metrics:
                values = ", ".join(
                    f"{kind} {metrics[f'test_mse_{mode}_{kind}']:.4g}" for kind in KINDS
                )
                parts.append(f"{mode} test MSE: {values}")
        return "; ".join(parts)
