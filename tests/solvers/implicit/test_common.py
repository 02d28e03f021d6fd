"""What the implicit methods share (implicit/common.py): graphs with a compiled Jacobian compile
without torch's internal FutureWarning, which kutta hides (``quiet_jacobian_lowering``).

Without caches inductor lowers the graphs again, which is where torch 2.13 warns: torch.func's
standard basis goes through ``aten.diagonal``, lowered with the deprecated
``torch._prims_common.check``. The fields are this file's own, so no other test compiled them.
"""

from __future__ import annotations

import contextlib
import types
import warnings

import pytest
import torch

import kutta
from kutta.controllers import PIController
from kutta.solvers.compiled import CompileTarget
from kutta.solvers.implicit.bdf import BDF
from kutta.solvers.implicit.rosenbrock import rosenbrock23

pytestmark = pytest.mark.slow  # each test compiles one graph without caches (10-20 s)


@contextlib.contextmanager
def _compiling_must_not_warn():
    """FutureWarnings as errors, with inductor's caches off."""
    with torch.compiler.config.patch(force_disable_caches=True), warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        yield


def _decay_to_cosine(t, y):
    return 50.0 * (y - torch.cos(t))


def test_the_compiled_jacobian_graph_compiles_without_future_warning():
    method = BDF(compile=True).bind(torch.float64, torch.device("cpu"))
    target = CompileTarget(_decay_to_cosine, False, torch.float64, types.SimpleNamespace(calls=0))
    y = torch.tensor([1.0], dtype=torch.float64)
    with _compiling_must_not_warn(), torch.no_grad():
        jac = method._compiled_jacobian(target, 0.5, y, "coupled")
    assert jac.tolist() == [[[50.0]]]  # d/dy of 50 (y - cos t)


def _decay_to_sine(t, y):
    return 50.0 * (y - torch.sin(t))


def test_the_rosenbrock_step_graph_compiles_without_future_warning():
    # the step graph evaluates the Jacobian itself
    with _compiling_must_not_warn(), torch.no_grad():
        sol = kutta.solve(
            _decay_to_sine,
            torch.tensor([0.0], dtype=torch.float64),
            span=(1.0, 0.0),
            method=rosenbrock23(compile=True),
            controller=PIController(rtol=1e-6, atol=1e-9),
        )
    # backwards from y(1) = 0 the fast mode decays: y(0) is the slow solution's,
    # (2500 sin t + 50 cos t) / 2501 at t = 0
    assert abs(float(sol.ys[-1, 0]) - 50.0 / 2501.0) < 1e-4
