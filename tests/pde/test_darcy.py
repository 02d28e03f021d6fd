"""The Darcy finite-difference solver: second-order convergence to a manufactured solution and to
the torsion function's series, symmetry of the operator and of the solution, and the data set."""

import math

import numpy as np
import pytest
import torch

from kutta.errors import InvalidArgumentError
from kutta.pde.darcy import darcy_data, darcy_matrix, solve_darcy

PI = math.pi


def nodes(s: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    return torch.meshgrid(x, x, indexing="ij")


def manufactured(s: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """u = sin(pi x) sin(2 pi y), a = 1 + 0.5 sin(2 pi x + 1) cos(pi y), f = -div(a grad u)."""
    x, y = nodes(s)
    u = torch.sin(PI * x) * torch.sin(2 * PI * y)
    u_x = PI * torch.cos(PI * x) * torch.sin(2 * PI * y)
    u_y = 2 * PI * torch.sin(PI * x) * torch.cos(2 * PI * y)
    a = 1 + 0.5 * torch.sin(2 * PI * x + 1) * torch.cos(PI * y)
    a_x = PI * torch.cos(2 * PI * x + 1) * torch.cos(PI * y)
    a_y = -0.5 * PI * torch.sin(2 * PI * x + 1) * torch.sin(PI * y)
    laplacian = -5 * PI**2 * u
    f = -(a_x * u_x + a_y * u_y + a * laplacian)
    return a, f, u


def test_manufactured_solution_converges_at_second_order():
    sizes = [17, 33, 65, 129]
    errors = []
    for s in sizes:
        a, f, u = manufactured(s)
        errors.append((solve_darcy(a, f) - u).abs().max().item())
    slopes = [math.log2(e0 / e1) for e0, e1 in zip(errors, errors[1:])]
    assert all(1.9 < p < 2.1 for p in slopes), (errors, slopes)
    assert errors[-1] < 1e-3


def torsion_centre_value(terms: int = 801) -> float:
    """-Laplacian u = 1 on the unit square, u = 0 on the boundary, at (1/2, 1/2), by its sine
    series u = sum over odd m, n of 16 / (pi^4 m n (m^2 + n^2)) sin(m pi x) sin(n pi y)
    (separation of variables; e.g. Timoshenko & Goodier, Theory of Elasticity, torsion of a
    rectangular bar). Truncation error below 1e-9 at 801 terms."""
    m = np.arange(1, terms + 1, 2, dtype=np.float64)
    sign = np.where((m // 2) % 2 == 0, 1.0, -1.0)  # sin(m pi / 2) for odd m
    mm, nn = np.meshgrid(m, m, indexing="ij")
    return float((16 / (PI**4 * mm * nn * (mm**2 + nn**2)) * sign[:, None] * sign[None, :]).sum())


def test_constant_coefficient_matches_the_torsion_series():
    exact = torsion_centre_value()
    assert exact == pytest.approx(0.0736713532, abs=1e-9)
    errors = []
    for s in (17, 33, 65):
        u = solve_darcy(torch.full((s, s), 2.0, dtype=torch.float64))  # a = 2 halves u
        errors.append(abs(2 * u[s // 2, s // 2].item() - exact))
    assert errors[-1] < 1e-4
    assert all(1.9 < math.log2(e0 / e1) < 2.1 for e0, e1 in zip(errors, errors[1:])), errors


def test_operator_is_symmetric_and_the_solution_respects_the_symmetries_of_a():
    a, _ = darcy_data(1, 33, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a = a[0]
    matrix = darcy_matrix(a.numpy())
    assert abs(matrix - matrix.T).max() == 0
    u = solve_darcy(a)
    assert u[0].abs().max() == 0 and u[:, -1].abs().max() == 0  # Dirichlet boundary
    assert (u[1:-1, 1:-1] > 0).all()  # maximum principle: f = 1 > 0
    torch.testing.assert_close(solve_darcy(a.T), u.T, atol=1e-14, rtol=0)
    torch.testing.assert_close(solve_darcy(a.flip(0)), u.flip(0), atol=1e-14, rtol=0)
    torch.testing.assert_close(solve_darcy(a.flip(1)), u.flip(1), atol=1e-14, rtol=0)


def test_batch_solve_and_dtype():
    a, u = darcy_data(3, 17, solver_resolution=33, generator=torch.Generator().manual_seed(1))
    assert a.dtype == u.dtype == torch.float32 and a.shape == u.shape == (3, 17, 17)
    assert set(a.unique().tolist()) == {3.0, 12.0}
    # each sample of the batch solved on its own gives the same field, subsampled
    fine_a, fine_u = darcy_data(
        3, 33, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    torch.testing.assert_close(fine_a[:, ::2, ::2].float(), a)
    torch.testing.assert_close(solve_darcy(fine_a[2])[::2, ::2].float(), u[2])
    torch.testing.assert_close(fine_u[:, ::2, ::2].float(), u)


@pytest.mark.parametrize(
    "a, match",
    [
        (torch.ones(4, 5), "shape"),
        (torch.ones(2, 2), "s >= 3"),
        (-torch.ones(5, 5), "positive"),
    ],
)
def test_bad_coefficients_are_rejected(a, match):
    with pytest.raises(InvalidArgumentError, match=match):
        solve_darcy(a)


def test_bad_resolutions_are_rejected():
    with pytest.raises(InvalidArgumentError, match="multiple"):
        darcy_data(1, 10, solver_resolution=33)
