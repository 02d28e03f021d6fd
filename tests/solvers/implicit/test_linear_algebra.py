"""The small linear-algebra and Newton pieces behind the implicit methods' fast paths."""

from __future__ import annotations

import pytest
import torch

from kutta.solvers.implicit.linalg import INVERSE_MAX_SIZE, Factorization
from kutta.solvers.implicit.newton import newton


@pytest.mark.parametrize("m", [3, INVERSE_MAX_SIZE + 4])  # explicit inverse, then LU
def test_factorization_solves_like_torch_solve_and_flags_singular_blocks(m):
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, m, m, dtype=torch.float64, generator=gen) + m * torch.eye(m)
    a[1] = 0.0  # a singular block
    rhs = torch.randn(3, m, dtype=torch.float64, generator=gen)
    lu = Factorization(a)
    assert lu.ok.tolist() == [True, False, True] and not lu.all_ok
    x = lu.solve(rhs)
    keep = [0, 2]
    expected = torch.linalg.solve(a[keep], rhs[keep])
    torch.testing.assert_close(x[keep], expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        Factorization(a[keep], inverse=False).solve(rhs[keep]), expected, rtol=1e-12, atol=1e-12
    )


def _contraction(offset: float):
    """z = 0.5 cos z (solution 0.4501836...) from a start ``offset`` away, solved with the
    exact derivative at the solution: each correction shrinks by a fixed small rate."""
    star = 0.45018361129487355
    slope = 1 + 0.5 * torch.sin(torch.tensor(star, dtype=torch.float64))

    def phi(z):
        return 0.5 * torch.cos(z + star) - star  # shifted: the solution is z = 0

    return phi, (lambda r, z: r / slope), torch.full((1, 1), offset, dtype=torch.float64)


def test_newton_remembered_rate_ends_the_iteration_after_a_small_first_correction():
    phi, solve, z0 = _contraction(0.05)
    scale = torch.ones(1, 1, dtype=torch.float64)
    # The first correction is about 0.05: above tol = 0.01 on its own (a second iteration is
    # needed to measure the rate), below it with a remembered rate of 0.1.
    fresh = newton(phi, z0, solve, scale, 0.01, 10)
    remembered = newton(phi, z0, solve, scale, 0.01, 10, torch.tensor([0.1]))
    assert fresh.iterations >= 2 and remembered.iterations == 1
    assert remembered.all_converged and bool(remembered.converged.all())
    # A remembered rate above 1 means no memory (as no rate at all).
    capped = newton(phi, z0, solve, scale, 0.01, 10, torch.tensor([5.0]))
    assert capped.iterations == fresh.iterations
    torch.testing.assert_close(capped.z, fresh.z, rtol=0, atol=0)


@pytest.mark.parametrize("blocks", [1, 3])
def test_newton_from_none_starts_at_zero(blocks):
    phi, solve, _ = _contraction(0.0)
    scale = torch.ones(blocks, 1, dtype=torch.float64)

    def phi_shifted(z):  # the solution at z = 0.3 in every block
        return phi(z - 0.3) + 0.3

    zero = torch.zeros(blocks, 1, dtype=torch.float64)
    from_none = newton(phi_shifted, None, solve, scale, 1e-12, 20)
    from_zero = newton(phi_shifted, zero, solve, scale, 1e-12, 20)
    assert from_none.iterations == from_zero.iterations and from_none.all_converged
    torch.testing.assert_close(from_none.z, from_zero.z, rtol=0, atol=1e-15)
    torch.testing.assert_close(from_none.z, torch.full_like(zero, 0.3), rtol=0, atol=1e-12)
