"""logqp: the log-ratio term equals the path-space KL(q || p) between OU posterior and prior.

Posterior q: dX = -θ_q X dt + σ dW, prior p: drift -θ_p X, same σ. Girsanov gives
KL = E_q ∫_0^T ½ ((θ_p - θ_q) X_t / σ)² dt = ½ (Δθ/σ)² ∫_0^T (m_t² + v_t) dt, with the OU moments
m_t = x0 e^{-θ_q t}, v_t = σ² (1 - e^{-2 θ_q t}) / (2 θ_q).
"""

import math

import pytest
import torch

import kutta.sde as ksde

THETA_Q, THETA_P, SIGMA, X0 = 1.0, 2.0, 0.5, 1.0


class Posterior(ksde.SDEIto):
    def __init__(self, noise_type):
        super().__init__(noise_type=noise_type)

    def f(self, t, y):
        return -THETA_Q * y

    def h(self, t, y):
        return -THETA_P * y

    def g(self, t, y):
        diffusion = torch.full_like(y, SIGMA)
        return diffusion if self.noise_type == "diagonal" else diffusion.unsqueeze(-1)


def _closed_form_kl(T: float, points: int = 20001) -> float:
    ts = torch.linspace(0, T, points, dtype=torch.float64)
    second_moment = (X0 * torch.exp(-THETA_Q * ts)) ** 2 + SIGMA**2 * (
        1 - torch.exp(-2 * THETA_Q * ts)
    ) / (2 * THETA_Q)
    integral = torch.trapezoid(second_moment, ts).item()
    return 0.5 * ((THETA_P - THETA_Q) / SIGMA) ** 2 * integral


@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_logqp_matches_the_ou_path_kl(noise_type):
    n = 4000
    y0 = torch.full((n, 1), X0, dtype=torch.float64)
    ts = torch.linspace(0, 1, 5, dtype=torch.float64)
    ys, log_ratio = ksde.sdeint(
        Posterior(noise_type), y0, ts, method="euler", dt=2.0**-8, logqp=True
    )
    assert ys.shape == (5, n, 1) and log_ratio.shape == (4, n)
    per_path = log_ratio.sum(dim=0)
    estimate = per_path.mean().item()
    standard_error = per_path.std().item() / math.sqrt(n)
    exact = _closed_form_kl(1.0)
    assert abs(estimate - exact) < 4 * standard_error + 0.02 * exact
    # Per-interval increments match the KL accumulated over each interval, too.
    first_quarter = _closed_form_kl(0.25)
    assert (
        abs(log_ratio[0].mean().item() - first_quarter)
        < 4 * log_ratio[0].std().item() / math.sqrt(n) + 0.02 * first_quarter
    )


def test_logqp_gradients_through_the_adjoint_match_backprop():
    class Learnable(Posterior):
        def __init__(self):
            super().__init__("diagonal")  # constant diagonal g: the Itô correction must vanish
            self.rate = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

        def f(self, t, y):
            return -self.rate * y

    sde = Learnable()
    y0 = torch.full((64, 1), X0, dtype=torch.float64)
    bm = ksde.BrownianInterval(0.0, 1.0, size=(64, 2), dtype=torch.float64, entropy=0)
    grads = []
    for solver in (ksde.sdeint, ksde.sdeint_adjoint):
        ys, log_ratio = solver(sde, y0, [0.0, 1.0], bm=bm, method="euler", dt=2.0**-8, logqp=True)
        (grad,) = torch.autograd.grad(log_ratio.sum() + ys.sum(), [sde.rate])
        grads.append(grad.item())
    assert abs(grads[0] - grads[1]) < 0.02 * abs(grads[0])
