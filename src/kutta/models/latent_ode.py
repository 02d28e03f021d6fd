"""Latent ODE (Rubanova et al. 2019): a VAE whose latent state follows an ODE.

The encoder, an ODE-RNN run backwards in time, summarises a series into ``q(z0 | x)`` at the
series' first observation time ``t0`` (or, run forwards for forecasting, at its last); ``z(t)``
then solves ``dz/dt = f(t, z)`` and a decoder maps ``z(t)`` to the mean of a Gaussian
observation model. Optionally, the observation times themselves are modelled as a Poisson
process with intensity ``lambda(z(t))`` per channel.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models._series import Series, as_series, reverse_series
from kutta.models._solver import SolverOptions, evolve, evolve_through, make_solver_options
from kutta.models.layers import AutonomousMLP
from kutta.models.ode_rnn import _check_no_step_size, run_ode_rnn

ENCODER_DIRECTIONS = ("backward", "forward")


class Posterior(NamedTuple):
    """``q(z0 | x) = N(mean, std^2)`` at time ``t0`` (each series' first observation time, its
    last with a forward encoder, or the model's ``z0_time``)."""

    mean: torch.Tensor  # (B, L)
    std: torch.Tensor  # (B, L)
    t0: torch.Tensor  # (B,)


class ELBO(NamedTuple):
    """Terms of the evidence lower bound, one entry per series (sum over observed values)."""

    elbo: torch.Tensor  # (B,) log_likelihood + poisson_log_likelihood - kl_weight * kl
    log_likelihood: torch.Tensor  # (B,) Gaussian log-density of the observed target values
    poisson_log_likelihood: torch.Tensor  # (B,) zero without the Poisson process
    kl: torch.Tensor  # (B,) KL(q(z0 | x) || N(0, I))
    observed: torch.Tensor  # (B,) number of observed target values

    def loss(self) -> torch.Tensor:
        """The negative ELBO per observed value, a scalar to minimise."""
        return -self.elbo.sum() / self.observed.sum().clamp(min=1)


class _PoissonAugmented(nn.Module):
    """``d[z, Lambda]/dt = [f(t, z), lambda(z)]``: carries the integrated intensity along."""

    def __init__(self, dynamics: nn.Module, intensity: nn.Module, latent_dim: int):
        super().__init__()
        self.dynamics = dynamics
        self.intensity = intensity
        self.latent_dim = latent_dim

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z = state[..., : self.latent_dim]
        return torch.cat([self.dynamics(t, z), self.intensity(z)], dim=-1)


class LatentODE(nn.Module):
    """A latent ODE VAE for irregularly sampled series.

    Args:
        input_channels: channels C of the data.
        latent_dim: size L of the latent state.
        encoder_hidden: hidden size of the backwards ODE-RNN encoder.
        decoder_hidden: width of the decoder MLP's hidden layer (0: a linear decoder).
        dynamics: the latent vector field ``f(t, z)``, ``t`` of shape (B,) (default: a tanh MLP
            of width ``4 L``, autonomous).
        encoder_func: the encoder's vector field on its hidden state (default: a tanh MLP of
            width ``encoder_hidden``, autonomous). Rubanova et al. use 100 hidden units.
        posterior_hidden: width of the hidden layer of the MLP from the encoder's summary to
            ``q(z0 | x)`` (0: linear). Rubanova et al. use a tanh layer of 100 units.
        obs_std: the observation noise std; None learns one per channel.
        poisson: also model the observation times as a Poisson process per channel.
        value_normalizer, time_normalizer: optional fitted ``kutta.data.ValueNormalizer`` and
            ``TimeNormalizer``, kept in the state dict. Batches and query times are then given
            in user units, :meth:`predict` and :meth:`sample` answer in user units, and the
            model itself (latent ODE, ``obs_std``, the ELBO) works in normalised units.
        z0_time: the time (user units) where ``z0`` lives, common to all series; None puts it
            at each series' first observation. A common time lets a batch that shares its
            target times be decoded in one solve (much faster).
        carry_to_z0_time: with ``z0_time``, evolve the encoder's summary from each series'
            first observation to ``z0_time`` by the encoder's ODE (True), or read ``q(z0 | x)``
            off the summary at the first observation and place it at ``z0_time`` as it is
            (False: Rubanova et al.'s extrapolation, whose decoder starts at the first time to
            predict wherever the encoder ended; the posterior map then learns the shift).
        encoder_direction: "backward" (Rubanova et al.): the encoder reads each series from its
            last observation to its first, where its summary, and ``q(z0 | x)``, sits.
            "forward": from first to last, the summary at the last observation. For
            forecasting, where ``z0_time`` is after the observations: the summary is then
            carried only from the last observation to ``z0_time``, not across the whole
            observed window by the encoder's own ODE with no observation to correct it.
        union_grid: decode a batch on the union of its series' target times: one solve over
            that shared grid, from which each series reads its own times back (Rubanova et
            al.'s way), instead of following each series' own times. Same loss to solver
            tolerance; it needs a common start (``z0_time``, or series that share their first
            time) and otherwise decodes on the series' own times. The encoder always follows
            each series' own times (it updates at every observation anyway).
        method, rtol, atol, options, gradient, batch_mode: solver settings (encoder and
            latent ODE; see :class:`~kutta.models.SolverOptions`).
        latent_solver: a :class:`~kutta.models.SolverOptions` for the latent ODE alone and for
            carrying the encoder's state to ``z0_time`` (a span with no observation); default:
            the settings above. Rubanova et al. step the encoder with Euler and decode with
            dopri5; a fixed-step encoder solver steps once per observation interval.

    Example:
        >>> from types import SimpleNamespace
        >>> from kutta.models import LatentODE
        >>> batch = SimpleNamespace(times=torch.linspace(0, 1, 6), values=torch.randn(3, 6, 2))
        >>> model = LatentODE(2, latent_dim=4, encoder_hidden=8, method="rk4")
        >>> mean, std = model.predict(batch, torch.linspace(0, 2, 5), n_samples=4)
        >>> mean.shape, model.elbo(batch).loss().shape
        (torch.Size([3, 5, 2]), torch.Size([]))
    """

    def __init__(
        self,
        input_channels: int,
        latent_dim: int = 4,
        encoder_hidden: int = 25,
        decoder_hidden: int = 20,
        dynamics: nn.Module | None = None,
        obs_std: float | None = 0.01,
        poisson: bool = False,
        value_normalizer: nn.Module | None = None,
        time_normalizer: nn.Module | None = None,
        z0_time: float | None = None,
        encoder_func: nn.Module | None = None,
        posterior_hidden: int = 0,
        carry_to_z0_time: bool = True,
        encoder_direction: str = "backward",
        *,
        method: str | None = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        options: Mapping[str, Any] | None = None,
        gradient: str = "backprop",
        batch_mode: str = "shared",
        union_grid: bool = False,
        latent_solver: SolverOptions | None = None,
    ):
        super().__init__()
        self.solver = make_solver_options(method, rtol, atol, options, gradient, batch_mode)
        self.latent_solver = self.solver if latent_solver is None else latent_solver
        self.union_grid = union_grid
        _check_no_step_size(self.solver)
        _check_no_step_size(self.latent_solver)
        if obs_std is not None and not obs_std > 0:
            raise InvalidArgumentError(f"obs_std must be positive or None, got {obs_std}")
        self.input_channels = input_channels
        self.latent_dim = latent_dim
        self.value_normalizer = value_normalizer
        self.time_normalizer = time_normalizer
        self.z0_time = None if z0_time is None else float(z0_time)
        self.carry_to_z0_time = carry_to_z0_time
        if encoder_direction not in ENCODER_DIRECTIONS:
            raise UnknownNameError("encoder_direction", encoder_direction, ENCODER_DIRECTIONS)
        self.encoder_direction = encoder_direction
        self.encoder_cell = nn.GRUCell(2 * input_channels, encoder_hidden)
        self.encoder_func = (
            encoder_func
            if encoder_func is not None
            else AutonomousMLP(encoder_hidden, (encoder_hidden,))
        )
        if posterior_hidden:
            self.to_posterior: nn.Module = nn.Sequential(
                nn.Linear(encoder_hidden, posterior_hidden),
                nn.Tanh(),
                nn.Linear(posterior_hidden, 2 * latent_dim),
            )
        else:
            self.to_posterior = nn.Linear(encoder_hidden, 2 * latent_dim)
        self.dynamics = (
            dynamics if dynamics is not None else AutonomousMLP(latent_dim, (4 * latent_dim,))
        )
        if decoder_hidden:
            self.decoder: nn.Module = nn.Sequential(
                nn.Linear(latent_dim, decoder_hidden),
                nn.Tanh(),
                nn.Linear(decoder_hidden, input_channels),
            )
        else:
            self.decoder = nn.Linear(latent_dim, input_channels)
        if obs_std is None:
            self.log_obs_std = nn.Parameter(torch.full((input_channels,), math.log(0.1)))
        else:
            self.register_buffer("log_obs_std", torch.full((input_channels,), math.log(obs_std)))
        self.intensity = (
            nn.Sequential(
                nn.Linear(latent_dim, decoder_hidden or latent_dim),
                nn.Tanh(),
                nn.Linear(decoder_hidden or latent_dim, input_channels),
                nn.Softplus(),
            )
            if poisson
            else None
        )

    @property
    def obs_std(self) -> torch.Tensor:
        """The observation noise std per channel: (C,)."""
        return self.log_obs_std.exp()

    def _series(self, batch: Any, name: str) -> Series:
        """The batch validated and in model units."""
        series = as_series(batch, name)
        if series.values.shape[-1] != self.input_channels:
            raise InvalidArgumentError(
                f"{name}: expected {self.input_channels} channels, got {series.values.shape[-1]}"
            )
        values, times = series.values, series.times
        if self.value_normalizer is not None:
            values = torch.where(series.mask.bool(), self.value_normalizer.normalize(values), 0.0)
        if self.time_normalizer is not None:
            times = self.time_normalizer.normalize(times)
        return Series(times, values, series.mask, series.lengths)

    def _model_times(self, times: torch.Tensor) -> torch.Tensor:
        return times if self.time_normalizer is None else self.time_normalizer.normalize(times)

    def _user_values(self, values: torch.Tensor) -> torch.Tensor:
        return values if self.value_normalizer is None else self.value_normalizer.inverse(values)

    def encode(self, batch: Any) -> Posterior:
        """``q(z0 | x)`` from the observed batch, at each series' first observation time (last,
        with the forward encoder) or at ``z0_time`` (``t0`` in model units)."""
        series = self._series(batch, "batch")
        backward = self.encoder_direction == "backward"
        ordered = reverse_series(series) if backward else series
        h0 = series.values.new_zeros(series.values.shape[0], self.encoder_cell.hidden_size)
        summary = run_ode_rnn(self.encoder_cell, self.encoder_func, ordered, h0, self.solver).last
        t0 = series.first_time if backward else series.last_time
        if self.z0_time is not None:
            # Carry the summary on to the common start time (Rubanova et al. run the encoder
            # over the whole grid down to its first time). No observation falls in this span,
            # which a fixed-step encoder solver would cross in one step: solve it like the
            # latent ODE.
            common = self._model_times(torch.full_like(t0, self.z0_time))
            if self.carry_to_z0_time:
                summary = evolve(self.encoder_func, summary, t0, common, self.latent_solver)
            t0 = common
        mean, raw_std = self.to_posterior(summary).chunk(2, dim=-1)
        return Posterior(mean, nn.functional.softplus(raw_std) + 1e-4, t0)

    def _latent_paths(
        self, z0: torch.Tensor, t0: torch.Tensor, times: torch.Tensor
    ) -> torch.Tensor:
        """Latent states (and integrated intensities) at ``times`` (N, Q) from z0 (N, L) at t0 (N,)."""
        field, start = self.dynamics, z0
        if self.intensity is not None:
            field = _PoissonAugmented(self.dynamics, self.intensity, self.latent_dim)
            start = torch.cat([z0, z0.new_zeros(z0.shape[0], self.input_channels)], dim=-1)
        if self.union_grid and bool((t0 == t0[0]).all()):
            grid, position = torch.unique(times, sorted=True, return_inverse=True)
            grid = grid.expand(len(t0), -1)
            on_grid = evolve_through(field, start, t0, grid, self.latent_solver)
            return on_grid.gather(1, position.unsqueeze(-1).expand(-1, -1, on_grid.shape[-1]))
        return evolve_through(field, start, t0, times, self.latent_solver)

    def decode(self, z0: torch.Tensor, t0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Decoded means at ``times`` (B, Q) for latent starts ``z0`` (S, B, L): (S, B, Q, C).

        Times and values in model (normalised) units."""
        samples, batch = z0.shape[:2]
        flat_times = times.to(z0).expand(batch, -1).repeat(samples, 1)
        paths = self._latent_paths(z0.reshape(samples * batch, -1), t0.repeat(samples), flat_times)
        means = self.decoder(paths[..., : self.latent_dim])
        return means.reshape(samples, batch, *means.shape[1:])

    def elbo(
        self,
        batch: Any,
        target: Any | None = None,
        n_samples: int = 1,
        kl_weight: float = 1.0,
    ) -> ELBO:
        """The ELBO of ``target`` (default: ``batch`` itself) given the observed ``batch``.

        ``target`` has the same series as ``batch`` in the same order, possibly at other times
        (interpolation: the full series; extrapolation: the later part). The expectation over
        ``q(z0 | x)`` is a Monte Carlo mean over ``n_samples`` reparametrised draws.
        """
        target_series = self._series(batch if target is None else target, "target")
        posterior = self.encode(batch)
        if posterior.mean.shape[0] != target_series.values.shape[0]:
            raise InvalidArgumentError("target must hold the same series as batch")
        eps = torch.randn(
            n_samples,
            *posterior.mean.shape,
            dtype=posterior.mean.dtype,
            device=posterior.mean.device,
        )
        z0 = posterior.mean + posterior.std * eps
        samples, b = z0.shape[:2]
        flat_times = target_series.times.repeat(samples, 1)
        paths = self._latent_paths(
            z0.reshape(samples * b, -1), posterior.t0.repeat(samples), flat_times
        )
        paths = paths.reshape(samples, b, *paths.shape[1:])
        latent = paths[..., : self.latent_dim]
        mask = target_series.mask
        residual = (target_series.values - self.decoder(latent)) / self.obs_std
        log_density = -0.5 * residual**2 - self.log_obs_std - 0.5 * math.log(2 * math.pi)
        log_likelihood = (log_density * mask).sum(dim=(-1, -2)).mean(0)
        kl = (-torch.log(posterior.std) + 0.5 * (posterior.std**2 + posterior.mean**2) - 0.5).sum(
            -1
        )
        poisson = torch.zeros_like(kl)
        if self.intensity is not None:
            rates = self.intensity(latent)  # (S, B, Q, C)
            integrated = paths[..., -1, self.latent_dim :]  # (S, B, C) up to the last time
            events = (torch.log(rates + 1e-8) * mask).sum(dim=(-1, -2))
            poisson = (events - integrated.sum(-1)).mean(0)
        return ELBO(
            log_likelihood + poisson - kl_weight * kl,
            log_likelihood,
            poisson,
            kl,
            mask.sum(dim=(-1, -2)),
        )

    def loss(
        self, batch: Any, target: Any | None = None, n_samples: int = 1, kl_weight: float = 1.0
    ) -> torch.Tensor:
        """The training loss: the negative ELBO per observed target value (a scalar).

        This is the model's side of :func:`kutta.train.fit`, which trains it with the Trainer
        (checkpoints, resume, logging); see :meth:`elbo` for the arguments.

        Example:
            >>> from types import SimpleNamespace
            >>> batch = SimpleNamespace(times=torch.linspace(0, 1, 4), values=torch.randn(2, 4, 1))
            >>> LatentODE(1, latent_dim=2, encoder_hidden=4, method="rk4").loss(batch).shape
            torch.Size([])
        """
        return self.elbo(batch, target, n_samples, kl_weight).loss()

    def vector_fields(self) -> tuple[nn.Module, ...]:
        """The modules the solvers call (encoder and latent dynamics): count their calls for NFE."""
        return (self.encoder_func, self.dynamics)

    def predict(
        self, batch: Any, times: torch.Tensor, n_samples: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictive mean and std at ``times`` ((Q,) or (B, Q)) given the observed ``batch``.

        The std combines the spread of the decoded paths over ``n_samples`` posterior draws
        with the observation noise: (B, Q, C) each.
        """
        posterior = self.encode(batch)
        eps = torch.randn(
            n_samples,
            *posterior.mean.shape,
            dtype=posterior.mean.dtype,
            device=posterior.mean.device,
        )
        z0 = posterior.mean + posterior.std * eps
        means = self.decode(z0, posterior.t0, self._model_times(times))
        spread = means.var(dim=0, unbiased=False) if n_samples > 1 else torch.zeros_like(means[0])
        std = (spread + self.obs_std**2).sqrt()
        if self.value_normalizer is not None:
            std = self.value_normalizer.inverse_scale(std)
        return self._user_values(means.mean(0)), std

    def sample(self, n: int, times: torch.Tensor, condition_on: Any | None = None) -> torch.Tensor:
        """Decoded mean paths at ``times``: from the prior, (n, Q, C), with ``z0`` at ``times[0]``;
        or, given ``condition_on`` (a batch of B series), from each posterior: (n, B, Q, C)."""
        if condition_on is None:
            if times.dim() != 1:
                raise InvalidArgumentError("times must be 1-D (Q,) when sampling from the prior")
            ref = (
                self.decoder[0].weight
                if isinstance(self.decoder, nn.Sequential)
                else self.decoder.weight
            )
            z0 = torch.randn(n, 1, self.latent_dim, dtype=ref.dtype, device=ref.device)
            t = self._model_times(times.to(ref))
            return self._user_values(self.decode(z0, t[:1], t.unsqueeze(0))[:, 0])
        posterior = self.encode(condition_on)
        eps = torch.randn(
            n, *posterior.mean.shape, dtype=posterior.mean.dtype, device=posterior.mean.device
        )
        z0 = posterior.mean + posterior.std * eps
        return self._user_values(self.decode(z0, posterior.t0, self._model_times(times)))
