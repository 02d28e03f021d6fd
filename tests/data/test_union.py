"""Union grid: sorted union of per-series times, index/mask mapping, scatter/gather."""

import torch

from kutta.data import collate_irregular, to_union_grid, union_grid


def batch_of(*time_lists, channels=1):
    series = []
    for times in time_lists:
        times = torch.tensor(times, dtype=torch.float64)
        series.append((times, torch.stack([times * (c + 1) for c in range(channels)], dim=1)))
    return collate_irregular(series)


def test_grid_index_and_mask():
    batch = batch_of([0.0, 0.5, 2.0], [0.5, 1.0], [2.0, 3.0, 4.0, 5.0])
    grid = union_grid(batch)
    assert grid.times.tolist() == [0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0]
    for b in range(3):
        n = int(batch.lengths[b])
        assert torch.equal(grid.times[grid.index[b, :n]], batch.times[b, :n])
        assert grid.mask[b].sum().item() == n
        assert torch.equal(grid.times[grid.mask[b]], batch.times[b, :n])
    assert grid.index[1].tolist() == [1, 2, 2, 2]  # padding points at the last real time


def test_scatter_then_gather_returns_the_steps():
    batch = batch_of([0.0, 0.5, 2.0], [0.5, 1.0], channels=2)
    grid = union_grid(batch)
    on_grid = grid.scatter(batch.values, batch.step_mask)
    assert on_grid.shape == (2, 4, 2)
    assert on_grid[1, :, 0].tolist() == [0.0, 0.5, 1.0, 0.0]
    back = grid.gather(on_grid)
    assert torch.equal(back[batch.step_mask], batch.values[batch.step_mask])


def test_to_union_grid_batch():
    batch = batch_of([0.0, 2.0], [1.0, 2.0, 3.0])
    on_grid, grid = to_union_grid(batch)
    assert on_grid.times.tolist() == [[0.0, 1.0, 2.0, 3.0]] * 2
    assert on_grid.lengths.tolist() == [4, 4]
    assert on_grid.mask[..., 0].tolist() == [[True, False, True, False], [False, True, True, True]]
    assert on_grid.values[..., 0].tolist() == [[0.0, 0.0, 2.0, 0.0], [0.0, 1.0, 2.0, 3.0]]
    assert torch.equal(grid.mask, on_grid.mask[..., 0])


def test_gradients_flow_through_scatter_and_gather():
    batch = batch_of([0.0, 0.5, 2.0], [0.5, 1.0])
    values = batch.values.clone().requires_grad_()
    grid = union_grid(batch)

    def roundtrip(v):
        return grid.gather(grid.scatter(v, batch.step_mask) * 3.0)

    assert torch.autograd.gradcheck(roundtrip, (values,))
    # A masked loss: padded outputs (which repeat the last real step) are not counted.
    (roundtrip(values) * batch.step_mask.unsqueeze(-1)).sum().backward()
    assert values.grad[batch.step_mask].eq(3.0).all() and values.grad[~batch.step_mask].eq(0).all()
