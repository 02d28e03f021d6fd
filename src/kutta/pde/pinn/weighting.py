"""Weights of a PINN's loss terms: fixed, or adapted from gradient statistics during training.

The loss is ``sum_i w_i L_i`` over the terms (``"pde"`` and each condition's name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from kutta.errors import InvalidArgumentError


class FixedWeights:
    """Constant weights; terms not named weigh 1.

    Example:
        >>> FixedWeights({"boundary": 10.0}).weights(["pde", "boundary"])
        {'pde': 1.0, 'boundary': 10.0}
    """

    def __init__(self, weights: Mapping[str, float] | None = None):
        self.values = dict(weights or {})
        for name, value in self.values.items():
            if not value >= 0:
                raise InvalidArgumentError(f"the weight of {name!r} must be >= 0, got {value}")

    def check_names(self, names: Sequence[str]) -> None:
        unknown = sorted(set(self.values) - set(names))
        if unknown:
            raise InvalidArgumentError(
                f"weights given for unknown loss terms {unknown}; the terms are {sorted(names)}"
            )

    def weights(self, names: Sequence[str]) -> dict[str, float]:
        return {name: float(self.values.get(name, 1.0)) for name in names}

    def update(
        self, losses: Mapping[str, torch.Tensor], parameters: Sequence[torch.Tensor]
    ) -> None:
        """Fixed weights never change."""

    def state_dict(self) -> dict[str, Any]:
        """The weights as plain data (a checkpoint loadable with ``weights_only=True``)."""
        return {"values": dict(self.values)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.values = dict(state["values"])


class GradientNormAnnealing(FixedWeights):
    """Learning-rate annealing of Wang, Teng & Perdikaris (2021), "Understanding and mitigating
    gradient flow pathologies in physics-informed neural networks", SIAM J. Sci. Comput. 43(5),
    A3055-A3081, Algorithm 1.

    Every ``every`` steps, each term ``i`` other than ``reference`` (the PDE residual) gets the
    estimate ``w_hat_i = max |grad L_ref| / mean |grad L_i|`` (over all trainable parameters),
    and its weight becomes ``(1 - alpha) w_i + alpha w_hat_i``. The reference term keeps its
    fixed weight. The default ``alpha = 0.1`` puts 0.9 on the old weight, as the authors'
    published code does. Two differences from that code: it takes the statistics over weight
    matrices only and differentiates the already weighted term; here every trainable parameter
    counts and ``L_i`` is unweighted, so ``w_hat_i`` is the ratio itself. Weights should be
    frozen for L-BFGS, which needs one fixed objective (``fit`` does).

    Its state (weights and the count of ``update`` calls, which decides the next update step)
    is :meth:`state_dict`; a training run that resumes from a checkpoint restores both.

    Example:
        >>> annealing = GradientNormAnnealing(alpha=0.5)
        >>> p = torch.tensor([1.0, 1.0], requires_grad=True)
        >>> losses = {"pde": (10 * p).sum(), "boundary": p.sum()}
        >>> annealing.update(losses, [p])
        >>> annealing.weights(["pde", "boundary"])  # w_hat = 10 / 1: 0.5 * 1 + 0.5 * 10
        {'pde': 1.0, 'boundary': 5.5}
        >>> resumed = GradientNormAnnealing(alpha=0.5)
        >>> resumed.load_state_dict(annealing.state_dict())
        >>> resumed.state_dict()
        {'values': {'boundary': 5.5}, 'calls': 1}
    """

    def __init__(
        self,
        initial: Mapping[str, float] | None = None,
        alpha: float = 0.1,
        every: int = 10,
        reference: str = "pde",
    ):
        super().__init__(initial)
        if not 0 < alpha <= 1:
            raise InvalidArgumentError(f"alpha must be in (0, 1], got {alpha}")
        if every < 1:
            raise InvalidArgumentError(f"every must be >= 1, got {every}")
        self.alpha, self.every, self.reference = alpha, every, reference
        self._calls = 0

    def check_names(self, names: Sequence[str]) -> None:
        super().check_names(names)
        if self.reference not in names:
            raise InvalidArgumentError(
                f"the reference term {self.reference!r} is not a loss term; terms: {sorted(names)}"
            )

    def update(
        self, losses: Mapping[str, torch.Tensor], parameters: Sequence[torch.Tensor]
    ) -> None:
        """Update the weights from the current terms' gradients (every ``every``-th call)."""
        self._calls += 1
        if (self._calls - 1) % self.every:
            return
        parameters = [p for p in parameters if p.requires_grad]
        reference = self._flat_grad(losses[self.reference], parameters).abs().max()
        for name, loss in losses.items():
            if name == self.reference:
                continue
            mean = self._flat_grad(loss, parameters).abs().mean()
            if mean > 0:
                estimate = float(reference / mean)
                old = self.values.get(name, 1.0)
                self.values[name] = (1 - self.alpha) * old + self.alpha * estimate

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "calls": self._calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "calls" not in state:
            raise InvalidArgumentError(
                "the annealing state has no 'calls' (the count that times the updates); "
                f"got the keys {sorted(state)}"
            )
        super().load_state_dict(state)
        self._calls = int(state["calls"])

    @staticmethod
    def _flat_grad(loss: torch.Tensor, parameters: Sequence[torch.Tensor]) -> torch.Tensor:
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for g, p in zip(grads, parameters)
            ]
        )
