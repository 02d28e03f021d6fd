"""Domains: seeded sampling by three methods lands where it should, with the right statistics."""

import numpy as np
import pytest
import torch
from scipy.stats import qmc

from kutta.errors import InvalidArgumentError, UnknownNameError
from kutta.pde.pinn import SAMPLING_METHODS, Box, Interval, Rectangle, SpaceTime, unit_samples


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_interior_points_are_inside_seeded_and_reproducible(method):
    box = Box([-1.0, 0.0, 2.0], [1.0, 0.5, 3.0])
    points = box.sample_interior(100, method, seed=3, dtype=torch.float64)
    assert points.shape == (100, 3) and points.dtype == torch.float64
    assert bool(box.contains(points).all())
    assert torch.equal(points, box.sample_interior(100, method, seed=3, dtype=torch.float64))
    assert not torch.equal(points, box.sample_interior(100, method, seed=4, dtype=torch.float64))
    # the points fill the box: every coordinate spans most of its range
    span = (points.max(0).values - points.min(0).values) / torch.tensor(
        [2.0, 0.5, 1.0], dtype=torch.float64
    )
    assert bool((span > 0.9).all())


def test_default_dtype_is_torchs_default():
    assert Interval(0, 1).sample_interior(3).dtype == torch.get_default_dtype()


def test_latin_hypercube_puts_one_point_in_each_stratum():
    unit = unit_samples(50, 3, "lhs", seed=0)
    for column in unit.T:
        assert sorted(np.floor(column * 50).astype(int)) == list(range(50))


def test_sobol_points_are_more_even_than_uniform_ones():
    sobol = qmc.discrepancy(unit_samples(256, 2, "sobol", seed=0))
    uniform = np.median(
        [qmc.discrepancy(unit_samples(256, 2, "uniform", seed=s)) for s in range(5)]
    )
    assert sobol < uniform / 3


def test_boundary_points_lie_on_faces_in_proportion_to_their_area():
    box = Rectangle([0.0, 0.0], [2.0, 1.0])
    points = box.sample_boundary(6000, seed=0, dtype=torch.float64)
    assert bool(box.on_boundary(points).all()) and bool(box.contains(points).all())
    # faces x = 0 and x = 2 have length 1, faces y = 0 and y = 1 length 2: fractions 1/6 and 1/3
    fractions = [
        (points[:, 0] == 0).double().mean(),
        (points[:, 0] == 2).double().mean(),
        (points[:, 1] == 0).double().mean(),
        (points[:, 1] == 1).double().mean(),
    ]
    np.testing.assert_allclose(fractions, [1 / 6, 1 / 6, 1 / 3, 1 / 3], atol=0.02)
    # on a face, the free coordinate is spread over its range
    on_left = points[points[:, 0] == 0]
    assert on_left[:, 1].min() < 0.05 and on_left[:, 1].max() > 0.95


def test_interval_boundary_is_its_two_ends():
    points = Interval(-1.0, 3.0).sample_boundary(40, "lhs", seed=1)
    ends = set(points.flatten().tolist())
    assert ends == {-1.0, 3.0}


def test_space_time_initial_and_boundary_points():
    domain = SpaceTime(Rectangle([0, 0], [1, 1]), 0.5, 2.0)
    initial = domain.sample_initial(50, "sobol", dtype=torch.float64)
    assert bool((initial[:, 2] == 0.5).all()) and bool(domain.on_initial(initial).all())
    boundary = domain.sample_boundary(500, "lhs", dtype=torch.float64)
    assert bool(domain.on_boundary(boundary).all())
    assert boundary[:, 2].min() < 0.52 and boundary[:, 2].max() > 1.98
    interior = domain.sample_interior(50, dtype=torch.float64)
    assert bool(domain.contains(interior).all()) and not bool(domain.on_boundary(interior).any())


def test_outward_normals():
    box = Rectangle([0, 0], [1, 1])
    points = torch.tensor([[0.0, 0.5], [1.0, 0.5], [0.5, 0.0], [0.5, 1.0], [1.0, 1.0]])
    expected = torch.tensor([[-1, 0], [1, 0], [0, -1], [0, 1], [2**-0.5, 2**-0.5]])
    torch.testing.assert_close(box.boundary_normal(points), expected)
    space_time = SpaceTime(Interval(-1, 1), 0, 1)
    torch.testing.assert_close(
        space_time.boundary_normal(torch.tensor([[-1.0, 0.3], [1.0, 0.7]])),
        torch.tensor([[-1.0, 0.0], [1.0, 0.0]]),
    )


def test_bad_domains_and_requests_are_rejected():
    with pytest.raises(UnknownNameError, match="halton"):
        Box([0], [1]).sample_interior(4, "halton")
    with pytest.raises(InvalidArgumentError, match=">= 1"):
        Box([0], [1]).sample_interior(0)
    with pytest.raises(InvalidArgumentError, match="exceed"):
        Box([0, 1], [1, 1])
    with pytest.raises(InvalidArgumentError, match="same nonzero length"):
        Box([0, 0], [1])
    with pytest.raises(InvalidArgumentError, match="t0 < t1"):
        SpaceTime(Interval(0, 1), 1.0, 1.0)
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 2\)"):
        Rectangle([0, 0], [1, 1]).contains(torch.zeros(3))
    with pytest.raises(InvalidArgumentError, match="2 dimensions"):
        Rectangle([0], [1])
    with pytest.raises(InvalidArgumentError, match="outside"):
        Interval(0, 1).check_inside(torch.tensor([[0.5], [1.5]]))
    with pytest.raises(InvalidArgumentError, match="not on the boundary"):
        Interval(0, 1).boundary_normal(torch.tensor([[0.5]]))
