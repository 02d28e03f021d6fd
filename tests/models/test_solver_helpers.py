"""The per-series time-span machinery that ODE-RNN, Latent ODE and Neural CDE rely on."""

import pytest
import torch
from torch import nn

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.models._solver import SolverOptions, evolve, evolve_through

TIGHT = SolverOptions(method="dopri5", rtol=1e-10, atol=1e-12)


class Linear(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, t, z):
        return z @ self.a.T


def test_evolve_solves_each_series_over_its_own_span():
    a = torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], dtype=torch.float64)
    z = torch.randn(3, 2, dtype=torch.float64)
    t_from = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    t_to = torch.tensor([1.5, 1.0, -0.5], dtype=torch.float64)  # forward, empty, backward
    result = evolve(Linear(a), z, t_from, t_to, TIGHT)
    exact = torch.stack(
        [torch.linalg.matrix_exp(a * (t1 - t0)) @ zb for zb, t0, t1 in zip(z, t_from, t_to)]
    )
    torch.testing.assert_close(result, exact, rtol=1e-8, atol=1e-9)
    assert torch.equal(result[1], z[1])


def test_evolve_passes_per_series_times_to_the_field():
    class TimeOnly(nn.Module):  # dz/dt = t, so z(t1) - z(t0) = (t1^2 - t0^2) / 2
        def forward(self, t, z):
            assert t.shape == (z.shape[0],)
            return t.unsqueeze(-1).expand_as(z)

    t_from = torch.tensor([0.0, 1.0], dtype=torch.float64)
    t_to = torch.tensor([2.0, 3.0], dtype=torch.float64)
    result = evolve(TimeOnly(), torch.zeros(2, 1, dtype=torch.float64), t_from, t_to, TIGHT)
    torch.testing.assert_close(result.squeeze(-1), (t_to**2 - t_from**2) / 2)


def test_shared_grid_and_per_series_paths_agree():
    a = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    z0 = torch.randn(4, 2, dtype=torch.float64)
    grid = torch.tensor([0.3, 0.9, 1.4, 2.0], dtype=torch.float64)
    t0 = torch.zeros(4, dtype=torch.float64)
    shared = evolve_through(Linear(a), z0, t0, grid.expand(4, -1), TIGHT)
    ragged_grid = grid.expand(4, -1).clone()
    ragged_grid[0, -1] = 1.4  # one series ends early (padding repeats its last time)
    ragged = evolve_through(Linear(a), z0, t0, ragged_grid, TIGHT)
    torch.testing.assert_close(shared[1:], ragged[1:], rtol=1e-8, atol=1e-9)
    exact = torch.stack([z0 @ torch.linalg.matrix_exp(a * t).T for t in grid], dim=1)
    torch.testing.assert_close(shared, exact, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(ragged[0, -1], ragged[0, -2], rtol=0, atol=0)


PER_SAMPLE = SolverOptions(method="dopri5", rtol=1e-10, atol=1e-12, batch_mode="per_sample")


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_per_sample_evolve_matches_the_exact_solution(sign):
    a = torch.tensor([[-0.3, 1.0], [-1.0, -0.2]], dtype=torch.float64)
    z = torch.randn(3, 2, dtype=torch.float64)
    t_from = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    t_to = t_from + sign * torch.tensor([1.5, 0.0, 0.7], dtype=torch.float64)  # one empty span
    result = evolve(Linear(a), z, t_from, t_to, PER_SAMPLE)
    exact = torch.stack(
        [torch.linalg.matrix_exp(a * (t1 - t0)) @ zb for zb, t0, t1 in zip(z, t_from, t_to)]
    )
    torch.testing.assert_close(result, exact, rtol=1e-8, atol=1e-9)
    assert torch.equal(result[1], z[1])


def test_per_sample_grids_match_the_shared_solution():
    a = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    z0 = torch.randn(3, 2, dtype=torch.float64)
    t0 = torch.tensor([0.0, 0.5, 0.1], dtype=torch.float64)
    times = torch.tensor([[0.2, 0.7, 1.0], [0.6, 0.6, 0.6], [0.3, 1.2, 2.5]], dtype=torch.float64)
    result = evolve_through(Linear(a), z0, t0, times, PER_SAMPLE)
    exact = torch.stack(
        [
            torch.stack([torch.linalg.matrix_exp(a * (t - t0[b])) @ z0[b] for t in times[b]])
            for b in range(3)
        ]
    )
    torch.testing.assert_close(result, exact, rtol=1e-8, atol=1e-9)


def test_per_sample_fixed_steps_take_their_step_size_in_time_units():
    # Euler with h = 0.25 on dz/dt = z: z(1) = 1.25^4, whatever other series do.
    class Growth(nn.Module):
        def forward(self, t, z):
            return z

    solver = SolverOptions(method="euler", options={"step_size": 0.25}, batch_mode="per_sample")
    z = torch.ones(2, 1, dtype=torch.float64)
    t_from = torch.tensor([0.0, 3.0], dtype=torch.float64)
    result = evolve(
        Growth(), z, t_from, t_from + torch.tensor([1.0, 0.5], dtype=torch.float64), solver
    )
    torch.testing.assert_close(
        result.flatten(), torch.tensor([1.25**4, 1.25**2], dtype=torch.float64)
    )


def test_per_sample_bad_settings_are_named():
    with pytest.raises(InvalidArgumentError, match="backprop"):
        SolverOptions(batch_mode="per_sample", gradient="adjoint")
    with pytest.raises(InvalidArgumentError, match="not supported"):
        SolverOptions(batch_mode="per_sample", options={"grid_constructor": None})
    with pytest.raises(UnknownNameError, match="batch mode"):
        SolverOptions(batch_mode="ragged")
    with pytest.raises(InvalidArgumentError, match="same direction"):
        evolve(
            Linear(torch.eye(2, dtype=torch.float64)),
            torch.zeros(2, 2, dtype=torch.float64),
            torch.zeros(2, dtype=torch.float64),
            torch.tensor([1.0, -1.0], dtype=torch.float64),
            PER_SAMPLE,
        )


def test_a_shared_grid_may_start_at_t0():
    a = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)
    z0 = torch.randn(2, 2, dtype=torch.float64)
    grid = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    states = evolve_through(
        Linear(a), z0, torch.zeros(2, dtype=torch.float64), grid.expand(2, -1), TIGHT
    )
    assert torch.equal(states[:, 0], z0)
    exact = torch.stack([z0 @ torch.linalg.matrix_exp(a * t).T for t in grid], dim=1)
    torch.testing.assert_close(states, exact, rtol=1e-8, atol=1e-9)


def test_per_sample_query_at_the_start_time_costs_no_extra_solves():
    # Regression: a first query equal to t0 used to break the one per-sample solve into one
    # solve per interval. Asking for t0 as well must cost about what the later times cost.
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, t, z):
            self.calls += 1
            return -z

    solver = SolverOptions(batch_mode="per_sample", rtol=1e-6, atol=1e-8)
    z0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    t0 = torch.zeros(2, dtype=torch.float64)
    times = torch.tensor([[0.0, 0.5, 1.0, 1.5], [0.0, 0.3, 0.9, 2.0]], dtype=torch.float64)
    with_start, without_start = Counting(), Counting()
    out = evolve_through(with_start, z0, t0, times, solver)
    rest = evolve_through(without_start, z0, t0, times[:, 1:], solver)
    torch.testing.assert_close(out[:, 0], z0)
    torch.testing.assert_close(out[:, 1:], rest)
    assert with_start.calls <= without_start.calls + 2
