"""Time and value normalisation fitted on training data and carried in a model's state_dict.

Both are ``nn.Module``s whose statistics are buffers: put one inside your model and
``model.state_dict()`` saves it, so predictions can be mapped back to user units later.
"""

from __future__ import annotations

import torch
from torch import nn

from kutta.data.batch import IrregularBatch
from kutta.errors import InvalidArgumentError


class _Fitted(nn.Module):
    """Tracks whether statistics were fitted (or loaded) without syncing a device per call."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fitted", torch.tensor(False))
        self._is_fitted = False
        self.register_load_state_dict_post_hook(_refresh_fitted)

    def _require_fitted(self) -> None:
        if not self._is_fitted:
            raise InvalidArgumentError(
                f"{type(self).__name__} is not fitted; call .fit(training_batch) or load a state_dict"
            )

    def _mark_fitted(self) -> None:
        self.fitted.fill_(True)
        self._is_fitted = True


def _refresh_fitted(module: _Fitted, _incompatible: object) -> None:
    module._is_fitted = bool(module.fitted)


class ValueNormalizer(_Fitted):
    """Per-channel standardisation: (x - mean) / std over the observed training entries.

    A channel that is constant in the training data gets std 1 (it is only centred).

    Example:
        >>> values = torch.tensor([[[1.0], [3.0], [float("nan")]]])
        >>> train = IrregularBatch.from_nan_values(torch.arange(3.0), values)
        >>> norm = ValueNormalizer(num_channels=1).fit(train)
        >>> norm.normalize(torch.tensor([4.0])).tolist(), norm.inverse(torch.tensor([0.5])).tolist()
        ([2.0], [2.5])
    """

    def __init__(self, num_channels: int):
        super().__init__()
        if num_channels < 1:
            raise InvalidArgumentError(f"num_channels must be at least 1, got {num_channels}")
        self.register_buffer("mean", torch.zeros(num_channels))
        self.register_buffer("std", torch.ones(num_channels))

    def fit(self, batch: IrregularBatch) -> ValueNormalizer:
        """Set mean and std from the observed entries of ``batch`` (padding and gaps excluded)."""
        if batch.num_channels != self.mean.shape[0]:
            raise InvalidArgumentError(
                f"batch has {batch.num_channels} channels, the normalizer {self.mean.shape[0]}"
            )
        weights = batch.mask.to(batch.values.dtype)
        counts = weights.sum(dim=(0, 1))
        empty = (counts == 0).nonzero().flatten().tolist()
        if empty:
            raise InvalidArgumentError(f"channels {empty} have no observations to fit on")
        mean = (batch.values * weights).sum(dim=(0, 1)) / counts
        variance = (((batch.values - mean) * weights) ** 2).sum(dim=(0, 1)) / counts
        std = variance.sqrt()
        self.mean.copy_(mean)
        self.std.copy_(torch.where(std > 0, std, 1.0))
        self._mark_fitted()
        return self

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """Map values (..., C) in user units to normalised units."""
        self._require_fitted()
        return (values - self.mean.to(values.dtype)) / self.std.to(values.dtype)

    def inverse(self, values: torch.Tensor) -> torch.Tensor:
        """Map normalised values (..., C), e.g. predicted means, back to user units."""
        self._require_fitted()
        return values * self.std.to(values.dtype) + self.mean.to(values.dtype)

    def inverse_scale(self, spread: torch.Tensor) -> torch.Tensor:
        """Map a predicted standard deviation (..., C) back to user units (scale only)."""
        self._require_fitted()
        return spread * self.std.to(spread.dtype)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return self.normalize(values)

    def normalize_batch(self, batch: IrregularBatch) -> IrregularBatch:
        """The batch with observed values normalised (unobserved stay 0)."""
        values = torch.where(batch.mask, self.normalize(batch.values), 0.0)
        return IrregularBatch(batch.times, values, batch.mask, batch.lengths)


class TimeNormalizer(_Fitted):
    """Affine time map t -> (t - offset) / scale, with offset the earliest training time
    and scale the training span (latest - earliest time), so training times fall in [0, 1].

    Example:
        >>> times = torch.tensor([10.0, 20.0, 30.0])
        >>> train = IrregularBatch.from_nan_values(times, torch.ones(1, 3, 1))
        >>> norm = TimeNormalizer().fit(train)
        >>> norm.normalize(torch.tensor([25.0])).tolist(), norm.inverse(torch.tensor([1.0])).tolist()
        ([0.75], [30.0])
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor(0.0))
        self.register_buffer("scale", torch.tensor(1.0))

    def fit(self, batch: IrregularBatch) -> TimeNormalizer:
        """Set offset and scale from the real (unpadded) times of ``batch``."""
        real = batch.times[batch.step_mask]
        start, end = real.min(), real.max()
        if not end > start:
            raise InvalidArgumentError("cannot fit a time scale: all training times are equal")
        self.offset.copy_(start)
        self.scale.copy_(end - start)
        self._mark_fitted()
        return self

    def normalize(self, times: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        return (times - self.offset.to(times.dtype)) / self.scale.to(times.dtype)

    def inverse(self, times: torch.Tensor) -> torch.Tensor:
        self._require_fitted()
        return times * self.scale.to(times.dtype) + self.offset.to(times.dtype)

    def rate_to_user_units(self, rate: torch.Tensor) -> torch.Tensor:
        """A rate d/dt_normalised (e.g. a predicted derivative) in per-user-time-unit terms."""
        self._require_fitted()
        return rate / self.scale.to(rate.dtype)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        return self.normalize(times)

    def normalize_batch(self, batch: IrregularBatch) -> IrregularBatch:
        """The batch with normalised times."""
        return IrregularBatch(self.normalize(batch.times), batch.values, batch.mask, batch.lengths)
