"""The piecewise-polynomial control path that every interpolation scheme builds."""

from __future__ import annotations

import torch

from kutta.errors import InvalidArgumentError


class ControlPath:
    """A path X(t) in R^C per series, a polynomial on each interval between grid points.

    Subclasses compute ``pieces`` of shape (B, P, degree + 1, C): on piece ``i`` (from
    ``grid[i]`` to ``grid[i + 1]``), X(t) = sum_k pieces[:, i, k] * (t - grid[i]) ** k.

    Conventions:
        * a time exactly on a grid point uses the piece to its *left* (the first piece at
          the first grid point), so X'(t_k) depends on nothing observed after t_k;
        * outside its interval a series' path is held constant (X'(t) = 0), so solving a
          whole batch over a common time span gives each series the same result as solving
          it alone (torchcde extends the end polynomials instead);
        * per-series grids may end in padding that repeats the last time: a series never
          uses a piece past its own last time;
        * X' jumps at grid points (and where the hold begins), so give a solver
          ``grid_points`` as jump times: no step should straddle one.

    ``t`` is a scalar (all series at the same time) or of shape (B,) (one time per series);
    :meth:`evaluate` and :meth:`derivative` return (B, C).

    Example:
        >>> from kutta.interpolate import LinearInterpolation
        >>> times = torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.0, 2.0]])  # series 1 is padded
        >>> path = LinearInterpolation.from_values(torch.ones(2, 3, 1), times)
        >>> path.interval.tolist(), path.evaluate(torch.tensor([0.5, 1.5])).shape
        ([[0.0, 2.0], [0.0, 2.0]], torch.Size([2, 1]))
    """

    def __init__(self, pieces: torch.Tensor, grid: torch.Tensor, lengths: torch.Tensor):
        self._pieces = pieces
        self._grid = grid if grid.ndim == 2 else grid.expand(pieces.shape[0], -1).contiguous()
        self._given_grid = grid
        self._last_piece = lengths - 2
        self._first_time = self._grid[:, 0]
        self._last_time = self._grid.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)

    @property
    def grid_points(self) -> torch.Tensor:
        """The knots, (T,) or (B, T) as given: where X may be non-smooth, for ``jump_t``/``step_t``."""
        return self._given_grid

    @property
    def interval(self) -> torch.Tensor:
        """[first time, last time]: shape (2,) for a shared grid, (B, 2) per series."""
        if self._given_grid.ndim == 1:
            return self._given_grid[[0, -1]]
        return torch.stack([self._first_time, self._last_time], dim=1)

    @property
    def degree(self) -> int:
        return self._pieces.shape[2] - 1

    @property
    def batch_size(self) -> int:
        return self._pieces.shape[0]

    @property
    def channels(self) -> int:
        return self._pieces.shape[3]

    def _locate(self, t: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The (B, degree + 1, C) piece each series uses at ``t``, the offset of ``t`` (clamped
        to the interval) from the piece's start, and whether ``t`` lies inside the interval."""
        batch = self.batch_size
        t = torch.as_tensor(t, dtype=self._pieces.dtype, device=self._pieces.device)
        if t.ndim == 0 and self._given_grid.ndim == 1:
            # One time on one shared grid: a single piece index for the whole batch.
            grid = self._given_grid
            inside = (t >= grid[0]) & (t <= grid[-1])
            held = torch.where(t < grid[0], grid[0], torch.where(t > grid[-1], grid[-1], t))
            index = (torch.searchsorted(grid, held.detach()) - 1).clamp(min=0)
            return self._pieces[:, index], held - grid[index], inside
        if t.ndim == 0:
            t = t.expand(batch)
        elif tuple(t.shape) != (batch,):
            raise InvalidArgumentError(
                f"t must be a scalar or have shape (batch,) = ({batch},), got {tuple(t.shape)}"
            )
        first, last = self._first_time, self._last_time
        inside = (t >= first) & (t <= last)
        held = torch.where(t < first, first, torch.where(t > last, last, t))
        query = held.detach().unsqueeze(1).contiguous()
        index = torch.searchsorted(self._grid, query).squeeze(1) - 1
        index = torch.minimum(index.clamp(min=0), self._last_piece)
        start = self._grid.gather(1, index.unsqueeze(1)).squeeze(1)
        rows = torch.arange(batch, device=index.device)
        return self._pieces[rows, index], (held - start).unsqueeze(-1), inside.unsqueeze(-1)

    def evaluate(self, t: torch.Tensor | float) -> torch.Tensor:
        """X(t), shape (B, C)."""
        piece, s, _ = self._locate(t)
        result = piece[:, -1]
        for k in range(self.degree - 1, -1, -1):
            result = result * s + piece[:, k]
        return result

    def derivative(self, t: torch.Tensor | float) -> torch.Tensor:
        """dX/dt at t, shape (B, C); zero outside the interval."""
        piece, s, inside = self._locate(t)
        result = self.degree * piece[:, -1]
        for k in range(self.degree - 1, 0, -1):
            result = result * s + k * piece[:, k]
        return torch.where(inside, result, 0.0)
