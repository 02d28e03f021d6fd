"""Brownian motion: distribution of increments, independence, consistency, reproducibility."""

import gc
import math
import weakref

import pytest
import torch
from scipy import stats

from kutta.errors import InvalidArgumentError
from kutta.sde import BrownianInterval, BrownianPath, BrownianTree, ReverseBrownian

N = 4000  # samples per query: KS and correlation tests below have power well beyond their thresholds


def _ks_normal(samples: torch.Tensor, variance: float) -> float:
    z = (samples / math.sqrt(variance)).double().flatten().numpy()
    return stats.kstest(z, "norm").pvalue


@pytest.mark.parametrize("levy", ["none", "space-time", "foster"])
def test_increments_are_normal_with_variance_dt(levy):
    bm = BrownianInterval(
        0.0, 1.0, size=(N,), dtype=torch.float64, entropy=12, levy_area_approximation=levy
    )
    # Queries in a scrambled order, so values come from bridges at several depths of the tree.
    for ta, tb in [(0.3, 0.7), (0.0, 0.1), (0.55, 0.6), (0.1, 0.3), (0.6, 1.0), (0.05, 0.9)]:
        assert _ks_normal(bm(ta, tb), tb - ta) > 1e-3


def test_space_time_levy_area_is_normal_and_independent_of_increment():
    bm = BrownianInterval(
        0.0, 2.0, size=(N,), dtype=torch.float64, entropy=3, levy_area_approximation="space-time"
    )
    bm(0.0, 2.0)
    for ta, tb in [(0.5, 1.25), (0.0, 0.5), (1.25, 2.0), (0.7, 0.8)]:
        h = tb - ta
        w, u = bm(ta, tb, return_U=True)
        levy_h = u / h - 0.5 * w  # U = h (W/2 + H)
        assert _ks_normal(levy_h, h / 12) > 1e-3
        assert abs(torch.corrcoef(torch.stack([w, levy_h]))[0, 1]) < 4 / math.sqrt(N)


def test_non_overlapping_increments_are_uncorrelated():
    bm = BrownianInterval(0.0, 1.0, size=(N,), dtype=torch.float64, entropy=5)
    points = [0.0, 0.13, 0.2, 0.5, 0.51, 0.8, 1.0]
    increments = torch.stack([bm(a, b) for a, b in zip(points, points[1:])])
    corr = torch.corrcoef(increments)
    off_diagonal = corr - torch.diag(torch.diagonal(corr))
    assert off_diagonal.abs().max() < 4 / math.sqrt(N)
    # The covariance of overlapping increments is the length of the overlap.
    w_a, w_b = bm(0.13, 0.8), bm(0.5, 1.0)
    assert abs((w_a * w_b).mean().item() - 0.3) < 4 * math.sqrt(0.67 * 0.5 / N) + 0.01


@pytest.mark.parametrize("cache_size", [45, 1, None])
def test_queries_are_consistent(cache_size):
    bm = BrownianInterval(
        0.0, 1.0, size=(6, 3), dtype=torch.float64, entropy=2, cache_size=cache_size
    )
    whole = bm(0.1, 0.9)
    pieces = [bm(a, b) for a, b in [(0.1, 0.25), (0.25, 0.6), (0.6, 0.61), (0.61, 0.9)]]
    torch.testing.assert_close(sum(pieces), whole, rtol=0, atol=1e-13)
    # Many other queries later (evicting the cache), the same queries give the same values.
    for k in range(200):
        bm(k / 400, k / 400 + 0.3)
    assert torch.equal(bm(0.1, 0.9), whole)
    assert torch.equal(bm(0.25, 0.6), pieces[1])
    torch.testing.assert_close(bm(0.0, 0.9) - bm(0.0, 0.1), whole, rtol=0, atol=1e-13)


def test_space_time_integrals_add_up():
    bm = BrownianInterval(
        0.0, 1.0, size=(5, 2), dtype=torch.float64, entropy=9, levy_area_approximation="space-time"
    )
    w_ac, u_ac = bm(0.2, 0.9, return_U=True)
    w_ab, u_ab = bm(0.2, 0.45, return_U=True)
    w_bc, u_bc = bm(0.45, 0.9, return_U=True)
    # U_{a,c} = ∫_a^c (W_s - W_a) ds = U_{a,b} + U_{b,c} + (c - b) W_{a,b}
    torch.testing.assert_close(u_ac, u_ab + u_bc + 0.45 * w_ab, rtol=0, atol=1e-13)
    torch.testing.assert_close(w_ac, w_ab + w_bc, rtol=0, atol=1e-13)


@pytest.mark.parametrize("levy", ["davie", "foster"])
def test_levy_area_is_antisymmetric_with_the_right_variance(levy):
    bm = BrownianInterval(
        0.0, 1.0, size=(N, 2), dtype=torch.float64, entropy=4, levy_area_approximation=levy
    )
    bm(0.0, 0.5)
    # [0.25, 0.75] spans two tree intervals, so Chen's relation is exercised too.
    w, area = bm(0.25, 0.75, return_A=True)
    assert area.shape == (N, 2, 2)
    torch.testing.assert_close(area, -area.transpose(-1, -2))
    # Lévy area ½∫(W¹dW² - W²dW¹) over an interval of length h has variance h²/4 (Itô isometry).
    h = 0.5
    variance = area[:, 0, 1].var().item()
    assert abs(variance - h * h / 4) < 0.1 * h * h / 4


def test_seeded_paths_are_reproducible_and_different_seeds_differ():
    def draw(entropy):
        bm = BrownianInterval(
            0.0, 1.0, size=(3, 2), entropy=entropy, levy_area_approximation="space-time"
        )
        return torch.cat([bm(0.0, 0.3), bm(0.3, 0.31), bm(0.5, 1.0, return_U=True)[1]])

    assert torch.equal(draw(7), draw(7))
    assert not torch.allclose(draw(7), draw(8))
    torch.manual_seed(1)
    first = BrownianInterval(0.0, 1.0, size=(4,))(0.2, 0.4)
    torch.manual_seed(1)
    assert torch.equal(first, BrownianInterval(0.0, 1.0, size=(4,))(0.2, 0.4))


def test_given_total_increment_is_respected():
    total = torch.randn(4, 2)
    bm = BrownianInterval(0.0, 2.0, W=total)
    assert bm.shape == (4, 2)
    torch.testing.assert_close(bm(0.0, 0.7) + bm(0.7, 2.0), total)


def test_brownian_tree_depends_on_entropy_only():
    w0 = torch.zeros(N, dtype=torch.float64)
    first = BrownianTree(0.0, w0, t1=1.0, entropy=21, tol=1e-5)
    second = BrownianTree(0.0, w0, t1=1.0, entropy=21, tol=1e-5)
    values_forward = [first(t) for t in (0.2, 0.5, 0.7)]
    values_backward = [second(t) for t in (0.7, 0.5, 0.2)][::-1]
    for a, b in zip(values_forward, values_backward):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert _ks_normal(values_forward[0], 0.2) > 1e-3
    increment = first(0.5, 0.7)
    assert _ks_normal(increment, 0.2) > 1e-3
    assert abs(torch.corrcoef(torch.stack([values_forward[0], increment]))[0, 1]) < 4 / math.sqrt(N)


def test_brownian_tree_memory_is_bounded():
    bm = BrownianTree(0.0, torch.zeros(2), t1=1.0, entropy=1, cache_size=32)
    for k in range(500):
        bm(k / 500)
    assert len(bm._cache) <= 32


def test_brownian_path_starts_at_w0_and_reverse_brownian_mirrors_time():
    w0 = torch.full((3, 1), 2.0)
    path = BrownianPath(t0=0.0, w0=w0)
    assert torch.equal(path(0.0), w0)
    torch.testing.assert_close(path(0.6) - path(0.2), path(0.2, 0.6))
    bm = BrownianInterval(0.0, 1.0, size=(3,), entropy=0)
    assert torch.equal(ReverseBrownian(bm)(-0.75, -0.25), bm(0.25, 0.75))


def test_bad_queries_give_clear_errors():
    bm = BrownianInterval(0.0, 1.0, size=(2,))
    with pytest.raises(InvalidArgumentError, match="outside the Brownian motion's span"):
        bm(0.5, 1.5)
    with pytest.raises(InvalidArgumentError, match="ta <= tb"):
        bm(0.6, 0.4)
    with pytest.raises(InvalidArgumentError, match="return_U"):
        bm(0.1, 0.2, return_U=True)
    with pytest.raises(InvalidArgumentError, match="levy_area_approximation"):
        BrownianInterval(0.0, 1.0, levy_area_approximation="exact")
    with pytest.raises(InvalidArgumentError, match="t0 < t1"):
        BrownianInterval(1.0, 0.0)


# Recorded from the code before the sequential-query fast paths (commit 26c53af), float64, entropy
# 11: steps 0, 1, 57 and 99 of 100 sequential queries W(k/100, (k+1)/100), with and without the
# dt hint. The fast paths must not change a single drawn value.
_RECORDED_STEPS = {
    0.01: [
        ["0x1.e0629bdb8a861p-7", "-0x1.34f474446986fp-5"],
        ["0x1.04369dc93045dp-3", "0x1.515b64c7526d8p-4"],
        ["-0x1.f32b3ff9bd1d1p-6", "-0x1.f21f558437747p-5"],
        ["-0x1.49ca31f9839bcp-5", "-0x1.0951bdc49f1bap-5"],
    ],
    None: [
        ["0x1.d40c7f849c879p-7", "-0x1.3d9a51d8fba22p-5"],
        ["0x1.07e1917871998p-3", "0x1.4c24568895a53p-4"],
        ["-0x1.15c4e00449464p-5", "-0x1.2d36aee2cedbap-3"],
        ["-0x1.48ce52405a78ep-4", "-0x1.1b79a3cf3d5b0p-5"],
    ],
}


@pytest.mark.parametrize("dt", [0.01, None])
def test_sequential_increments_equal_recorded_values(dt):
    bm = BrownianInterval(0.0, 1.0, size=(2,), dtype=torch.float64, entropy=11, dt=dt)
    grid = [k / 100 for k in range(101)]
    steps = [bm(a, b) for a, b in zip(grid[:-1], grid[1:])]
    for k, recorded in zip((0, 1, 57, 99), _RECORDED_STEPS[dt]):
        expected = torch.tensor([float.fromhex(x) for x in recorded], dtype=torch.float64)
        assert torch.equal(steps[k], expected)
    # Tensor times and float times name the same points.
    assert torch.equal(bm(torch.tensor(0.57, dtype=torch.float64), 0.58), steps[57])


# Recorded from commit 26fa069 (before the tree lost its parent links), float64, entropy 11:
# steps 0, 6, 57 and 99 of 100 sequential queries on a grid accumulated as t + 0.01 (as sdeint's
# step grid is: its times differ from the tree's dt grid by round-off, so they snap to it).
_RECORDED_ACCUMULATED_STEPS = {
    0.01: [
        ["0x1.e0629bdb8a861p-7", "-0x1.34f474446986fp-5"],
        ["-0x1.601a520d3a541p-8", "-0x1.af485c294c951p-5"],
        ["-0x1.f32b3ff9bd2dap-6", "-0x1.f21f558437716p-5"],
        ["-0x1.49ca31f983904p-5", "-0x1.0951bdc49ef16p-5"],
    ],
    None: [
        ["0x1.d40c7f849c879p-7", "-0x1.3d9a51d8fba22p-5"],
        ["-0x1.b7783af25a663p-3", "-0x1.b5368d083d6edp-5"],
        ["-0x1.15c4e0044958fp-5", "-0x1.2d36aee2cec60p-3"],
        ["-0x1.48ce52405a4dfp-4", "-0x1.1b79a3cf3d276p-5"],
    ],
}


@pytest.mark.parametrize("dt", [0.01, None])
def test_accumulated_grid_increments_equal_recorded_values_forwards_and_backwards(dt):
    bm = BrownianInterval(0.0, 1.0, size=(2,), dtype=torch.float64, entropy=11, dt=dt)
    grid = [0.0]
    for _ in range(100):
        grid.append(grid[-1] + 0.01)
    intervals = list(zip(grid[:-1], grid[1:]))
    steps = [bm(a, b) for a, b in intervals]
    for k, recorded in zip((0, 6, 57, 99), _RECORDED_ACCUMULATED_STEPS[dt]):
        expected = torch.tensor([float.fromhex(x) for x in recorded], dtype=torch.float64)
        assert torch.equal(steps[k], expected)
    # Later queries of the same times (an adjoint's backward walk, after more splits) agree.
    bm(0.123, 0.777)
    for (a, b), step in reversed(list(zip(intervals, steps))):
        assert torch.equal(bm(a, b), step)


def test_dropped_brownian_interval_frees_its_values_without_the_cycle_collector():
    # The tree has no parent links, so dropping the motion releases its cached values at once
    # (on CUDA: device memory), not at some later garbage collection.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        bm = BrownianInterval(0.0, 1.0, size=(3, 2), entropy=0, dt=0.1)
        increments = [weakref.ref(bm(k / 10, (k + 1) / 10)) for k in range(10)]
        assert all(ref() is not None for ref in increments)  # held by the cache
        del bm
        assert all(ref() is None for ref in increments)
    finally:
        if gc_was_enabled:
            gc.enable()
