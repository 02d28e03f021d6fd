"""Balls and CSG shapes: seeded samples land inside / on the boundary with the right statistics,
membership and normals are exact on hand-picked points, and bad input is refused clearly.

Statistical checks use a fixed seed and a 4-sigma binomial bound: p_hat within
4 sqrt(p (1 - p) / n) of the exact proportion p (a correct sampler fails it with probability
below 1e-4 for a fresh seed).
"""

import math

import numpy as np
import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.pinn import (
    SAMPLING_METHODS,
    Ball,
    Difference,
    DirichletBC,
    Disk,
    Intersection,
    NeumannBC,
    PeriodicBC,
    PINNProblem,
    Polygon,
    Rectangle,
    SpaceTime,
    Union,
    fit,
    mlp,
)

F64 = torch.float64
PI = math.pi


def _assert_proportion(hits: torch.Tensor, p: float) -> None:
    n = hits.numel()
    p_hat = float(hits.double().mean())
    assert abs(p_hat - p) <= 4 * math.sqrt(p * (1 - p) / n), (p_hat, p)


@pytest.mark.parametrize("method", SAMPLING_METHODS)
@pytest.mark.parametrize("dim", [2, 3, 5])
def test_ball_samples_are_inside_and_on_the_sphere_seeded(method, dim):
    center = np.linspace(-1.0, 1.0, dim)
    ball = Ball(center, 0.7)
    inside = ball.sample_interior(300, method, seed=2, dtype=F64)
    sphere = ball.sample_boundary(300, method, seed=2, dtype=F64)
    distance = (inside - torch.as_tensor(center)).norm(dim=1)
    assert inside.shape == (300, dim) and bool((distance <= 0.7).all())
    assert bool(ball.contains(inside).all()) and not bool(ball.on_boundary(inside).any())
    torch.testing.assert_close(
        (sphere - torch.as_tensor(center)).norm(dim=1), torch.full((300,), 0.7, dtype=F64)
    )
    assert bool(ball.on_boundary(sphere).all())
    assert torch.equal(inside, ball.sample_interior(300, method, seed=2, dtype=F64))
    assert not torch.equal(inside, ball.sample_interior(300, method, seed=3, dtype=F64))
    assert torch.equal(sphere, ball.sample_boundary(300, method, seed=2, dtype=F64))


def test_fraction_of_a_square_inside_the_inscribed_disk_is_pi_over_4():
    square = Rectangle([-1.0, -1.0], [1.0, 1.0])
    points = square.sample_interior(40_000, seed=0, dtype=F64)
    _assert_proportion(Disk([0.0, 0.0], 1.0).contains(points), PI / 4)


@pytest.mark.parametrize("dim", [2, 3])
def test_ball_interior_is_uniform_in_volume_and_boundary_uniform_in_area(dim):
    ball = Ball([0.5] * dim, 2.0)
    center = torch.full((dim,), 0.5, dtype=F64)
    inside = ball.sample_interior(20_000, seed=1, dtype=F64)
    # the concentric ball of half the radius holds 2**-d of the volume
    _assert_proportion((inside - center).norm(dim=1) < 1.0, 2.0**-dim)
    # and the half-space x_0 > c_0 holds half of it
    _assert_proportion(inside[:, 0] > 0.5, 0.5)
    sphere = ball.sample_boundary(20_000, seed=1, dtype=F64)
    # on the circle, x_0 - c_0 > r/2 is the arc |angle| < pi/3: a third; on the sphere the
    # cap's area is 2 pi r h with h = r/2: a quarter (Archimedes)
    _assert_proportion(sphere[:, 0] > 1.5, 1 / 3 if dim == 2 else 1 / 4)
    _assert_proportion(sphere[:, -1] > 0.5, 0.5)


def test_sphere_measures():
    assert Disk([1.0, 2.0], 3.0).boundary_measure == pytest.approx(2 * PI * 3)
    assert Ball([0.0, 0.0, 0.0], 2.0).boundary_measure == pytest.approx(4 * PI * 4)
    # the 4-sphere's area is 8 pi**2 / 3 r**4
    assert Ball([0.0] * 5, 1.5).boundary_measure == pytest.approx(8 * PI**2 / 3 * 1.5**4)
    assert Rectangle([0.0, 0.0], [2.0, 1.0]).boundary_measure == 6.0


def test_disk_normals_are_exact_also_in_float32():
    disk = Disk([1.0, -2.0], 0.5)
    for dtype in (F64, torch.float32):
        points = disk.sample_boundary(200, "lhs", seed=0, dtype=dtype)
        assert bool(disk.on_boundary(points).all()), dtype
        offset = points.double() - torch.tensor([1.0, -2.0], dtype=F64)
        angle = torch.atan2(offset[:, 1], offset[:, 0])
        exact = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
        torch.testing.assert_close(disk.boundary_normal(points).double(), exact)


def test_neumann_condition_on_a_disk_uses_its_normals():
    disk = Disk([0.0, 0.0], 2.0)
    points = torch.tensor([[2.0, 0.0], [0.0, -2.0], [-(2**0.5), 2**0.5]], dtype=F64)

    def net(x):
        return x[:, :1] ** 2 + 3 * x[:, 1:]  # gradient (2x, 3)

    # du/dn = (2x, 3) . x / 2: 4, -3, (-2 sqrt2 * -sqrt2 + 3 sqrt2) / 2 = 2 + 1.5 sqrt2
    expected = torch.tensor([4.0, -3.0, 2 + 1.5 * 2**0.5], dtype=F64) - 1.0
    torch.testing.assert_close(NeumannBC(disk, points, 1.0).residual(net), expected)


def _plate():
    """The square [-1, 1]**2 with a hole of radius 0.5 at the origin."""
    return Rectangle([-1.0, -1.0], [1.0, 1.0]) - Disk([0.0, 0.0], 0.5)


def test_csg_membership_on_hand_picked_points():
    plate = _plate()
    points = torch.tensor(
        [[0.0, 0.0], [0.3, 0.3], [0.5, 0.0], [0.9, 0.9], [1.0, 0.2], [1.0, 1.0], [1.2, 0.0]]
    )
    assert plate.contains(points).tolist() == [False, False, True, True, True, True, False]
    assert plate.on_boundary(points).tolist() == [False, False, True, False, True, True, False]

    lens = Disk([0.0, 0.0], 1.0) & Disk([1.0, 0.0], 1.0)
    corner = [0.5, 3**0.5 / 2]
    points = torch.tensor([[0.5, 0.0], [0.0, 0.0], [1.0, 0.0], [-0.5, 0.0], corner])
    assert lens.contains(points).tolist() == [True, True, True, False, True]
    assert lens.on_boundary(points).tolist() == [False, True, True, False, True]

    pair = Disk([0.0, 0.0], 1.0) | Disk([1.0, 0.0], 1.0)
    points = torch.tensor([[0.5, 0.0], [1.0, 0.0], [-1.0, 0.0], [2.0, 0.0], corner, [0.5, 1.0]])
    assert pair.contains(points).tolist() == [True, True, True, True, True, False]
    assert pair.on_boundary(points).tolist() == [False, False, True, True, True, False]

    # nested: a plate whose hole holds an island
    island = plate | Disk([0.0, 0.0], 0.25)
    points = torch.tensor([[0.0, 0.0], [0.25, 0.0], [0.4, 0.0], [0.5, 0.0]])
    assert island.contains(points).tolist() == [True, True, False, True]
    assert island.on_boundary(points).tolist() == [False, True, False, True]


def test_operators_build_the_combinations():
    a, b = Disk([0.0, 0.0], 1.0), Disk([1.0, 0.0], 1.0)
    assert isinstance(a | b, Union) and isinstance(a & b, Intersection)
    assert isinstance(a - b, Difference)
    assert repr(a - b) == (
        "Difference(Ball(center=[0.0, 0.0], radius=1), Ball(center=[1.0, 0.0], radius=1))"
    )


def test_csg_normals_point_out_of_the_result():
    plate = _plate()
    on_hole = torch.tensor([[0.5, 0.0], [0.0, -0.5], [0.3, 0.4]], dtype=F64)
    torch.testing.assert_close(plate.boundary_normal(on_hole), -on_hole / 0.5)
    on_square = torch.tensor([[1.0, 0.3], [-0.2, -1.0], [1.0, 1.0]], dtype=F64)
    torch.testing.assert_close(
        plate.boundary_normal(on_square),
        torch.tensor([[1.0, 0.0], [0.0, -1.0], [2**-0.5, 2**-0.5]], dtype=F64),
    )
    lens = Disk([0.0, 0.0], 1.0) & Disk([1.0, 0.0], 1.0)
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 3**0.5 / 2]], dtype=F64)
    # at x = 0 the lens is bounded by the circle around (1, 0), whose outward normal is -x;
    # at the corner, the two circles' normals (1/2, sqrt3/2) and (-1/2, sqrt3/2) sum to +y
    torch.testing.assert_close(
        lens.boundary_normal(points),
        torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=F64),
    )


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_csg_samples_lie_in_the_result_and_cover_its_boundary_evenly(method):
    plate = _plate()
    inside = plate.sample_interior(2000, method, seed=0, dtype=F64)
    assert inside.shape == (2000, 2) and bool(plate.contains(inside).all())
    assert bool((inside.norm(dim=1) >= 0.5).all())
    assert torch.equal(inside, plate.sample_interior(2000, method, seed=0, dtype=F64))
    boundary = plate.sample_boundary(4000, method, seed=0, dtype=F64)
    assert boundary.shape == (4000, 2) and bool(plate.on_boundary(boundary).all())
    assert torch.equal(boundary, plate.sample_boundary(4000, method, seed=0, dtype=F64))
    # the hole's circle (length pi) is pi / (8 + pi) of the whole boundary
    _assert_proportion(boundary.norm(dim=1) < 0.75, PI / (8 + PI))
    # interior: the area outside the circle of radius 0.75 is (4 - 0.5625 pi) / (4 - 0.25 pi)
    _assert_proportion(inside.norm(dim=1) > 0.75, (4 - 0.5625 * PI) / (4 - 0.25 * PI))
    assert plate.sample_interior(10, method, seed=0).dtype == torch.get_default_dtype()


def test_csg_boundary_measures_are_estimated_to_a_percent():
    a, b = Disk([0.0, 0.0], 1.0), Disk([1.0, 0.0], 1.0)
    # each circle has an arc of angle 2 pi / 3 inside the other
    assert (a & b).boundary_measure == pytest.approx(4 * PI / 3, rel=1e-2)
    assert (a | b).boundary_measure == pytest.approx(8 * PI / 3, rel=1e-2)
    assert _plate().boundary_measure == pytest.approx(8 + PI, rel=1e-2)
    lens_points = (a & b).sample_boundary(1000, "lhs", seed=3, dtype=F64)
    assert bool((a & b).on_boundary(lens_points).all())
    assert bool((lens_points[:, 0] >= 0).all() & (lens_points[:, 0] <= 1).all())


def test_bad_shapes_and_requests_are_rejected():
    for radius in (-1.0, 0.0, math.nan, math.inf, "1"):
        with pytest.raises(InvalidArgumentError, match="radius must be a finite number > 0"):
            Ball([0.0, 0.0], radius)
    with pytest.raises(InvalidArgumentError, match=">= 2 coordinates"):
        Ball([0.0], 1.0)
    with pytest.raises(InvalidArgumentError, match="center must be finite"):
        Ball([0.0, math.nan], 1.0)
    with pytest.raises(InvalidArgumentError, match="a disk has 2 dimensions"):
        Disk([0.0, 0.0, 0.0], 1.0)
    disk = Disk([0.0, 0.0], 1.0)
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 2\)"):
        disk.contains(torch.zeros(4, 3))
    with pytest.raises(InvalidArgumentError, match=r"shape \(n, 2\) for Difference"):
        _plate().contains(torch.zeros(4, 3))
    with pytest.raises(InvalidArgumentError, match="not on the boundary"):
        disk.boundary_normal(torch.tensor([[0.5, 0.0]]))
    with pytest.raises(InvalidArgumentError, match="one dimension, got 2.*and 3"):
        disk | Ball([0.0, 0.0, 0.0], 1.0)
    with pytest.raises(InvalidArgumentError, match="space must be a shape.*got Tensor"):
        SpaceTime(torch.zeros(2), 0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="combines shapes.*got SpaceTime"):
        disk - SpaceTime(Rectangle([0, 0], [1, 1]), 0.0, 1.0)
    with pytest.raises(InvalidArgumentError, match="do not overlap"):
        disk & Disk([3.0, 0.0], 1.0)
    with pytest.raises(InvalidArgumentError, match="points must be an int"):
        (disk | Disk([1.0, 0.0], 1.0)).sample_boundary(0)
    swallowed = disk - Disk([0.0, 0.0], 2.0)  # the hole covers everything
    with pytest.raises(InvalidArgumentError, match="is it empty"):
        swallowed.sample_interior(5)
    with pytest.raises(InvalidArgumentError, match="no boundary points"):
        swallowed.sample_boundary(5)
    with pytest.raises(InvalidArgumentError, match="opposite faces of a box, got Ball"):
        PeriodicBC(disk, torch.tensor([[-1.0, 0.0]]), axis=0)


def test_poisson_on_an_annulus_with_a_neumann_hole():
    # laplacian u = 4 on 0.5 <= r <= 1, u = 1 on the outer circle, du/dn = -1 on the hole
    # (its normal points to the center, and du/dr = 2r = 1 there): exact u = r**2
    torch.manual_seed(0)
    ring = Disk([0.0, 0.0], 1.0) - Disk([0.0, 0.0], 0.5)
    boundary = ring.sample_boundary(200, "lhs", seed=1, dtype=F64)
    outer = boundary.norm(dim=1) > 0.75
    problem = PINNProblem(
        mlp(2, 1, hidden=20, depth=2).double(),
        lambda x, u, ops: ops.laplacian() - 4.0,
        ring,
        ring.sample_interior(300, "sobol", seed=0, dtype=F64),
        {
            "outer": DirichletBC(ring, boundary[outer], 1.0),
            "hole": NeumannBC(ring, boundary[~outer], -1.0),
        },
    )
    fit(problem, adam_steps=0, lbfgs_steps=200, log_every=100)
    points = ring.sample_interior(2000, seed=9, dtype=F64)
    exact = (points**2).sum(dim=1)
    error = float((problem.predict(points)[:, 0] - exact).norm() / exact.norm())
    # seed 0 reaches 1.2e-3 in 200 iterations (about 1.5 s)
    assert error < 5e-3


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_space_time_over_a_disk(method):
    domain = SpaceTime(Disk([0.0, 0.0], 1.0), 0.5, 2.0)
    inside = domain.sample_interior(500, method, seed=0, dtype=F64)
    assert inside.shape == (500, 3) and bool(domain.contains(inside).all())
    assert bool((inside[:, :2].norm(dim=1) <= 1).all())
    assert inside[:, 2].min() < 0.55 and inside[:, 2].max() > 1.95
    assert torch.equal(inside, domain.sample_interior(500, method, seed=0, dtype=F64))
    side = domain.sample_boundary(500, method, seed=0, dtype=F64)
    torch.testing.assert_close(side[:, :2].norm(dim=1), torch.ones(500, dtype=F64))
    assert bool(domain.on_boundary(side).all()) and not bool(domain.on_boundary(inside).any())
    assert side[:, 2].min() < 0.55 and side[:, 2].max() > 1.95
    torch.testing.assert_close(
        domain.boundary_normal(side), torch.cat([side[:, :2], torch.zeros(500, 1, dtype=F64)], 1)
    )
    initial = domain.sample_initial(50, method, dtype=F64)
    assert bool((initial[:, 2] == 0.5).all()) and bool(domain.on_initial(initial).all())
    outside = torch.tensor([[0.9, 0.9, 1.0], [0.0, 0.0, 2.5]], dtype=F64)
    assert not bool(domain.contains(outside).any())


def _ell(clockwise=False):
    """The L shape [0, 2]**2 without [1, 2]**2 (area 3, perimeter 8)."""
    vertices = [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]]
    return Polygon(vertices[::-1] if clockwise else vertices)


@pytest.mark.parametrize("clockwise", [False, True])
def test_polygon_membership_and_normals_on_hand_picked_points(clockwise):
    ell = _ell(clockwise)
    points = torch.tensor(
        [[0.5, 0.5], [1.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.0, 1.0], [1.0, 1.5], [2.5, 0.5]]
        + [[-0.5, 0.5], [-0.5, 1.5]]  # their rays to +x cross the boundary twice
    )
    inside = [True, True, True, False, True, True, False, False, False]
    assert ell.contains(points).tolist() == inside
    assert ell.on_boundary(points).tolist() == [False] * 4 + [True, True] + [False] * 3
    on_edges = torch.tensor([[1.0, 0.0], [2.0, 0.5], [1.5, 1.0], [1.0, 1.5], [0.0, 0.0]])
    s = 2**-0.5
    torch.testing.assert_close(
        ell.boundary_normal(on_edges),
        torch.tensor([[0.0, -1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [-s, -s]]),
    )
    # the reentrant corner (1, 1) joins edges facing +y and +x
    torch.testing.assert_close(
        ell.boundary_normal(torch.tensor([[1.0, 1.0]])), torch.tensor([[s, s]])
    )
    assert ell.boundary_measure == 8.0


@pytest.mark.parametrize("method", SAMPLING_METHODS)
def test_polygon_samples_cover_area_and_perimeter_evenly(method):
    triangle = Polygon([[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]])  # sides 4, 5 (hypotenuse), 3
    edge = triangle.sample_boundary(3000, method, seed=0, dtype=F64)
    assert bool(triangle.on_boundary(edge).all())
    on_hypotenuse = (edge[:, 0] / 4 + edge[:, 1] / 3 - 1).abs() < 1e-12
    _assert_proportion(on_hypotenuse, 5 / 12)
    _assert_proportion(edge[on_hypotenuse][:, 0] < 2.0, 1 / 2)  # evenly along each edge
    inside = triangle.sample_interior(2000, method, seed=0, dtype=F64)
    assert bool(triangle.contains(inside).all())
    assert bool((inside[:, 0] / 4 + inside[:, 1] / 3 <= 1 + 1e-12).all())
    # the triangle's centroid is (4/3, 1)
    torch.testing.assert_close(
        inside.mean(0), torch.tensor([4 / 3, 1.0], dtype=F64), atol=0.05, rtol=0
    )
    box = Rectangle([0.0, 0.0], [2.0, 2.0]).sample_interior(20_000, seed=0, dtype=F64)
    _assert_proportion(_ell().contains(box), 3 / 4)
    assert bool(_ell().on_boundary(_ell().sample_boundary(100, method, seed=0)).all())  # float32


def test_a_polygon_combines_with_other_shapes():
    ell_with_hole = _ell() - Disk([0.5, 0.5], 0.25)
    boundary = ell_with_hole.sample_boundary(500, "lhs", seed=0, dtype=F64)
    assert bool(ell_with_hole.on_boundary(boundary).all())
    on_hole = (boundary - torch.tensor([0.5, 0.5], dtype=F64)).norm(dim=1) < 0.3
    # the hole's circle (pi / 2) is a share pi / 2 / (8 + pi / 2) of the boundary
    _assert_proportion(on_hole, (PI / 2) / (8 + PI / 2))
    torch.testing.assert_close(
        ell_with_hole.boundary_normal(torch.tensor([[0.75, 0.5]], dtype=F64)),
        torch.tensor([[-1.0, 0.0]], dtype=F64),
    )


def test_bad_polygons_are_rejected():
    with pytest.raises(InvalidArgumentError, match=r"shape \(k, 2\) with k >= 3"):
        Polygon([[0, 0], [1, 0]])
    with pytest.raises(InvalidArgumentError, match=r"shape \(k, 2\)"):
        Polygon([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    with pytest.raises(InvalidArgumentError, match="finite"):
        Polygon([[0, 0], [1, 0], [0, math.inf]])
    with pytest.raises(InvalidArgumentError, match="repeats a vertex"):
        Polygon([[0, 0], [1, 0], [1, 0], [0, 1]])
    with pytest.raises(InvalidArgumentError, match="zero area"):
        Polygon([[0, 0], [1, 1], [2, 2]])
    with pytest.raises(InvalidArgumentError, match="edges 0 and 2 of the polygon cross"):
        Polygon([[0, 0], [2, 2], [2, 0], [0, 1]])  # a bow tie


def test_faces_shared_by_the_parts_are_not_boundary():
    # two boxes sharing the face x = 1 make the box [0, 2] x [0, 1], whose perimeter is 6
    pair = Rectangle([0.0, 0.0], [1.0, 1.0]) | Rectangle([1.0, 0.0], [2.0, 1.0])
    whole = Rectangle([0.0, 0.0], [2.0, 1.0])
    shared = torch.tensor([[1.0, 0.5], [1.0, 0.0]])
    assert pair.contains(shared).tolist() == [True, True]
    assert pair.on_boundary(shared).tolist() == [False, True]
    assert pair.boundary_measure == pytest.approx(6.0, rel=1e-2)
    boundary = pair.sample_boundary(1000, "lhs", seed=0, dtype=F64)
    assert bool(whole.on_boundary(boundary).all())
    torch.testing.assert_close(pair.boundary_normal(boundary), whole.boundary_normal(boundary))

    # a square minus the corner square flush with two of its sides is the L of _ell()
    cut = Rectangle([0.0, 0.0], [2.0, 2.0]) - Rectangle([1.0, 1.0], [2.0, 2.0])
    points = torch.tensor(
        [[2.0, 1.5], [1.5, 2.0], [2.0, 2.0], [1.0, 1.5], [1.5, 1.0], [1.0, 1.0], [2.0, 0.5]]
    )
    # the first three lie on the removed square's outer faces: outside the L's closure
    assert cut.contains(points).tolist() == _ell().contains(points).tolist()
    assert cut.on_boundary(points).tolist() == _ell().on_boundary(points).tolist()
    assert cut.contains(points).tolist() == [False, False, False, True, True, True, True]
    assert cut.boundary_measure == pytest.approx(8.0, rel=1e-2)
    boundary = cut.sample_boundary(1000, "sobol", seed=0, dtype=F64)
    assert bool(_ell().on_boundary(boundary).all())
    torch.testing.assert_close(cut.boundary_normal(boundary), _ell().boundary_normal(boundary))
