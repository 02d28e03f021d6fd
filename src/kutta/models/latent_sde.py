"""Latent SDE (Li et al. 2020): a VAE whose latent state follows a stochastic differential equation.

A GRU run backwards over the observations gives a context ``c(t)`` (a summary of the data at
and after ``t``). The posterior is the SDE ``dz = f(t, z, c(t)) dt + g(z) dW`` started from
``q(z0 | x)``; the prior is ``dz = h(t, z) dt + g(z) dW`` from ``p(z0)``, with the same
diffusion so that the KL between the two path measures is finite:
``KL = E int 1/2 |u|^2 dt`` with ``u = (f - h) / g`` (computed by ``sdeint(..., logqp=True)``).
The prior is an Ornstein-Uhlenbeck process (``h = theta (mu - z)``, constant ``g = sigma``) or
learned (``h`` an MLP, ``g`` one small sigmoid net per latent dimension).

Series must share one time grid (use ``kutta.data.to_union_grid`` for ragged ones; the mask
marks what was observed).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models._series import Series, as_series

PRIORS = ("ou", "learned")
LIKELIHOODS = ("normal", "laplace")


def _mlp(sizes: list[int], final: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Softplus())
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class _Dynamics(nn.Module):
    """The networks of both SDEs: posterior drift, prior drift ``h``, shared diffusion ``g``."""

    def __init__(
        self, latent: int, context: int, hidden: int, prior: str, ou: tuple[float, float, float]
    ):
        super().__init__()
        self.prior = prior
        self.theta, self.mu, self.sigma = ou
        self.posterior_drift = _mlp([latent + context + 1, hidden, hidden, latent])
        if prior == "learned":
            self.prior_drift = _mlp([latent + 1, hidden, latent])
            self.diffusion = nn.ModuleList(
                _mlp([1, hidden, 1], nn.Sigmoid()) for _ in range(latent)
            )

    @staticmethod
    def _with_time(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y, t.to(y).reshape(1, 1).expand(y.shape[0], 1)], dim=-1)

    def posterior(
        self, t: torch.Tensor, y: torch.Tensor, times: torch.Tensor, context: torch.Tensor
    ) -> torch.Tensor:
        # The context of the first observation at or after t (Li et al.'s piecewise-constant c).
        index = torch.searchsorted(times, t.detach().to(times).reshape(1), right=True)
        index = index.clamp(max=times.shape[0] - 1)
        return self.posterior_drift(self._with_time(t, torch.cat([y, context[index[0]]], dim=-1)))

    def h(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.prior == "ou":
            return self.theta * (self.mu - y)
        return self.prior_drift(self._with_time(t, y))

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.prior == "ou":
            return torch.full_like(y, self.sigma)
        return torch.cat([net(y[:, i : i + 1]) for i, net in enumerate(self.diffusion)], dim=-1)


class _PosteriorView(nn.Module):
    """The posterior SDE for one batch: drift ``f`` given the batch's context, prior drift
    ``h`` and diffusion ``g`` shared with the prior. A fresh object per solve, so an adjoint's
    backward pass still sees the context it was solved with."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, dynamics: _Dynamics, times: torch.Tensor, context: torch.Tensor):
        super().__init__()
        self.dynamics = dynamics
        self.times = times
        self.context = context

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.posterior(t, y, self.times, self.context)

    def h(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.h(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.g(t, y)


class _PriorView(nn.Module):
    """The prior SDE ``dz = h dt + g dW`` of a :class:`_Dynamics`."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, dynamics: _Dynamics):
        super().__init__()
        self.dynamics = dynamics

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.h(t, y)

    def g(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.dynamics.g(t, y)


class LatentSDEELBO(NamedTuple):
    """ELBO terms per series (B,), Monte Carlo means over the posterior samples."""

    elbo: torch.Tensor  # log_likelihood - kl_weight * (kl_z0 + kl_path)
    log_likelihood: torch.Tensor
    kl_z0: torch.Tensor
    kl_path: torch.Tensor
    observed: torch.Tensor  # number of observed values per series
    paths: torch.Tensor  # (n_samples, B, T, L) the sampled latent paths at the batch's times

    def loss(self) -> torch.Tensor:
        """The negative ELBO per observed value, a scalar to minimise."""
        return -self.elbo.sum() / self.observed.sum().clamp(min=1)


class LatentSDE(nn.Module):
    """A latent SDE VAE on series that share one time grid.

    Args:
        data_size: channels C of the data.
        latent_size: size L of the latent state.
        context_size: size of the encoder's context per time.
        hidden_size: width of the drift and encoder networks.
        prior: ``"ou"`` (Ornstein-Uhlenbeck with ``ou_theta``, ``ou_mu``, ``ou_sigma``, whose
            stationary law is ``p(z0)``) or ``"learned"`` (MLP drift, learned diffusion, learned
            Gaussian ``p(z0)``).
        likelihood: ``"normal"`` or ``"laplace"`` observation noise of scale ``obs_scale``.
        method, dt, adaptive, rtol, atol: settings of :func:`kutta.sde.sdeint`.
        gradient: ``"backprop"``, or ``"adjoint"`` (needs ``kutta.sde.sdeint_adjoint``).

    Example:
        >>> from types import SimpleNamespace
        >>> from kutta.models import LatentSDE
        >>> batch = SimpleNamespace(times=torch.linspace(0, 1, 5), values=torch.randn(3, 5, 1))
        >>> model = LatentSDE(1, latent_size=2, context_size=4, hidden_size=8, dt=0.05)
        >>> model.elbo(batch).elbo.shape, model.sample_prior(2, torch.linspace(0, 1, 5)).shape
        (torch.Size([3]), torch.Size([2, 5, 1]))
    """

    def __init__(
        self,
        data_size: int,
        latent_size: int = 4,
        context_size: int = 16,
        hidden_size: int = 64,
        prior: str = "ou",
        likelihood: str = "normal",
        obs_scale: float = 0.05,
        ou_theta: float = 1.0,
        ou_mu: float = 0.0,
        ou_sigma: float = 0.5,
        *,
        method: str = "euler",
        dt: float = 1e-2,
        adaptive: bool = False,
        rtol: float = 1e-5,
        atol: float = 1e-4,
        gradient: str = "backprop",
    ):
        super().__init__()
        if prior not in PRIORS:
            raise UnknownNameError("prior", prior, PRIORS)
        if likelihood not in LIKELIHOODS:
            raise UnknownNameError("likelihood", likelihood, LIKELIHOODS)
        if gradient not in ("backprop", "adjoint"):
            raise UnknownNameError("gradient mode", gradient, ("adjoint", "backprop"))
        if not (obs_scale > 0 and ou_theta > 0 and ou_sigma > 0 and dt > 0):
            raise InvalidArgumentError("obs_scale, ou_theta, ou_sigma and dt must be positive")
        self.data_size, self.latent_size = data_size, latent_size
        self.likelihood, self.obs_scale = likelihood, float(obs_scale)
        self.sde_settings = dict(method=method, dt=dt, adaptive=adaptive, rtol=rtol, atol=atol)
        self.gradient = gradient
        self.encoder = nn.GRU(2 * data_size, hidden_size)
        self.to_context = nn.Linear(hidden_size, context_size)
        self.to_posterior = nn.Linear(context_size, 2 * latent_size)
        self.dynamics = _Dynamics(
            latent_size, context_size, hidden_size, prior, (ou_theta, ou_mu, ou_sigma)
        )
        self.decoder = nn.Linear(latent_size, data_size)
        if prior == "learned":
            self.prior_mean = nn.Parameter(torch.zeros(latent_size))
            self.prior_log_std = nn.Parameter(torch.zeros(latent_size))
        else:
            stationary = ou_sigma / math.sqrt(2 * ou_theta)
            self.register_buffer("prior_mean", torch.full((latent_size,), float(ou_mu)))
            self.register_buffer("prior_log_std", torch.full((latent_size,), math.log(stationary)))

    def _sdeint(
        self,
        sde: nn.Module,
        z0: torch.Tensor,
        times: torch.Tensor,
        logqp: bool,
        entropy: int | None,
        extra_inputs: tuple[torch.Tensor, ...] = (),
    ) -> Any:
        """Solve ``sde``; ``extra_inputs`` are tensors the SDE uses besides its parameters
        (the adjoint must know them to send gradients back to the encoder)."""
        from kutta.sde import BrownianInterval

        if self.gradient == "adjoint":
            try:
                from kutta.sde import sdeint_adjoint
            except ImportError as exc:
                raise InvalidArgumentError(
                    "gradient='adjoint' needs kutta.sde.sdeint_adjoint, which this kutta build lacks"
                ) from exc
            params = tuple(extra_inputs) + tuple(p for p in sde.parameters() if p.requires_grad)

            def sdeint(*args: Any, **kwargs: Any) -> Any:
                return sdeint_adjoint(*args, adjoint_params=params, **kwargs)
        else:
            from kutta.sde import sdeint
        # Diagonal noise: one Brownian channel per state channel, including logqp's extra one.
        channels = z0.shape[1] + (1 if logqp else 0)
        bm = BrownianInterval(
            float(times[0]),
            float(times[-1]),
            size=(z0.shape[0], channels),
            dtype=z0.dtype,
            device=z0.device,
            entropy=entropy,
        )
        return sdeint(sde, z0, times, bm=bm, logqp=logqp, **self.sde_settings)

    def _series(self, batch: Any) -> tuple[Series, torch.Tensor]:
        series = as_series(batch)
        if series.values.shape[-1] != self.data_size:
            raise InvalidArgumentError(
                f"expected {self.data_size} channels, got {series.values.shape[-1]}"
            )
        times = series.times[0]
        if not bool((series.times == times).all()) or bool((times[1:] <= times[:-1]).any()):
            raise InvalidArgumentError(
                "LatentSDE needs every series on one strictly increasing time grid; put ragged "
                "series on their union grid (kutta.data.to_union_grid) and mask what is missing"
            )
        return series, times

    def encode(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The context (T, B, context) and ``q(z0 | x)``'s mean and std (B, L) each."""
        series, _ = self._series(batch)
        inputs = torch.cat([series.values, series.mask], dim=-1).transpose(0, 1)  # (T, B, 2C)
        hidden, _ = self.encoder(inputs.flip(0))
        context = self.to_context(hidden).flip(0)
        mean, raw_std = self.to_posterior(context[0]).chunk(2, dim=-1)
        return context, mean, nn.functional.softplus(raw_std) + 1e-4

    def _log_density(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "laplace":
            return -(x - mean).abs() / self.obs_scale - math.log(2 * self.obs_scale)
        z = (x - mean) / self.obs_scale
        return -0.5 * z**2 - math.log(self.obs_scale) - 0.5 * math.log(2 * math.pi)

    def elbo(
        self,
        batch: Any,
        n_samples: int = 1,
        kl_weight: float = 1.0,
        entropy: int | None = None,
    ) -> LatentSDEELBO:
        """The ELBO of the batch (all series on one time grid), ``n_samples`` paths per series.

        ``entropy`` seeds the Brownian motion (the ``z0`` draws follow torch's generator).
        """
        series, times = self._series(batch)
        context, mean, std = self.encode(batch)
        b = mean.shape[0]
        z0 = (
            mean + std * torch.randn(n_samples, *mean.shape, dtype=mean.dtype, device=mean.device)
        ).reshape(n_samples * b, -1)
        context = context.repeat(1, n_samples, 1)
        sde = _PosteriorView(self.dynamics, times, context)
        zs, log_ratio = self._sdeint(sde, z0, times, True, entropy, (context,))
        paths = zs.reshape(len(times), n_samples, b, -1).permute(1, 2, 0, 3)
        decoded = self.decoder(paths)
        log_likelihood = (
            (self._log_density(series.values, decoded) * series.mask).sum(dim=(-1, -2)).mean(0)
        )
        kl_path = log_ratio.sum(0).reshape(n_samples, b).mean(0)
        posterior = torch.distributions.Normal(mean, std)
        prior = torch.distributions.Normal(self.prior_mean, self.prior_log_std.exp())
        kl_z0 = torch.distributions.kl_divergence(posterior, prior).sum(-1)
        return LatentSDEELBO(
            log_likelihood - kl_weight * (kl_z0 + kl_path),
            log_likelihood,
            kl_z0,
            kl_path,
            series.mask.sum(dim=(-1, -2)),
            paths,
        )

    def sample_posterior(self, batch: Any, n: int, entropy: int | None = None) -> torch.Tensor:
        """``n`` decoded posterior paths per series at the batch's times: (n, B, T, C)."""
        series, times = self._series(batch)
        context, mean, std = self.encode(batch)
        b = mean.shape[0]
        z0 = (
            mean + std * torch.randn(n, *mean.shape, dtype=mean.dtype, device=mean.device)
        ).reshape(n * b, -1)
        context = context.repeat(1, n, 1)
        sde = _PosteriorView(self.dynamics, times, context)
        zs = self._sdeint(sde, z0, times, False, entropy, (context,))
        return self.decoder(zs).reshape(len(times), n, b, -1).permute(1, 2, 0, 3)

    def sample_prior(self, n: int, times: torch.Tensor, entropy: int | None = None) -> torch.Tensor:
        """``n`` decoded prior paths at ``times`` (T,), with ``z0 ~ p(z0)`` at ``times[0]``: (n, T, C)."""
        reference = self.decoder.weight
        eps = torch.randn(n, self.latent_size, dtype=reference.dtype, device=reference.device)
        z0 = self.prior_mean + self.prior_log_std.exp() * eps
        zs = self._sdeint(_PriorView(self.dynamics), z0, times.to(reference), False, entropy)
        return self.decoder(zs).transpose(0, 1)
