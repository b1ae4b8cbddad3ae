"""Easel's flow samplers. res_multistep: the RES exponential integrator on denoised
estimates, checked against the exact solution of the sampling ODE dx/dt = D(t) - x
(t = -log sigma) for denoised estimates D constant and linear in t, which a second-order
multistep step must integrate exactly. euler_ancestral: each step lands on the next noise
level's marginal."""

from __future__ import annotations

import math

import torch

from easel.models.flow_samplers import FlowResMultistepScheduler


def output_for(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """The flow model output (velocity) whose denoised estimate is `denoised`."""
    return (x - denoised) / sigma


def exact(x: torch.Tensor, t: float, t_next: float, a: float, b: float) -> torch.Tensor:
    """x at t_next for dx/dt = a + b t - x from x at t."""
    h = t_next - t
    decay = math.exp(-h)
    return decay * x + a * (1 - decay) + b * ((t_next - 1) - (t - 1) * decay)


def test_first_step_is_euler_and_exact_for_constant_estimates() -> None:
    scheduler = FlowResMultistepScheduler()
    scheduler.set_timesteps(3)
    scheduler.sigmas = torch.tensor([0.9, 0.6, 0.3, 0.0])
    x = torch.full((1, 1, 2, 2), 0.7)
    c = torch.full_like(x, -0.2)
    for i in range(3):
        sigma, sigma_next = float(scheduler.sigmas[i]), float(scheduler.sigmas[i + 1])
        x_next = scheduler.step(output_for(x, sigma, c), None, x, return_dict=False)[0]
        # x(sigma) = c + (x - c) * sigma / sigma_i exactly when the estimate stays c
        assert torch.allclose(x_next, c + (x - c) * sigma_next / sigma, atol=1e-6)
        x = x_next


def test_second_order_step_is_exact_for_linear_estimates() -> None:
    a, b = 0.3, -0.25
    sigmas = [0.8, 0.5, 0.2, 0.0]
    ts = [-math.log(s) for s in sigmas[:3]]
    scheduler = FlowResMultistepScheduler()
    scheduler.set_timesteps(3)
    scheduler.sigmas = torch.tensor(sigmas)
    x_prev = torch.full((1, 1, 2, 2), 1.1)
    x = exact(x_prev, ts[0], ts[1], a, b)
    scheduler._step_index = 1
    scheduler._old_denoised = torch.full_like(x, a + b * ts[0])
    denoised = torch.full_like(x, a + b * ts[1])
    out = scheduler.step(output_for(x, sigmas[1], denoised), None, x, return_dict=False)[0]
    assert torch.allclose(out, exact(x, ts[1], ts[2], a, b), atol=1e-5)
    euler = x + (x - denoised) / sigmas[1] * (sigmas[2] - sigmas[1])
    assert not torch.allclose(euler, exact(x, ts[1], ts[2], a, b), atol=1e-3)


def test_euler_ancestral_keeps_the_noise_level_of_the_next_step() -> None:
    """For a perfect denoiser of one point c, samples at level sigma ((1 - sigma) c +
    sigma n) must land at level sigma_next: mean (1 - sigma_next) c, spread sigma_next."""
    from easel.models.flow_samplers import FlowEulerAncestralScheduler

    scheduler = FlowEulerAncestralScheduler()
    scheduler.set_timesteps(2)
    scheduler.sigmas = torch.tensor([0.8, 0.4, 0.0])
    generator = torch.Generator().manual_seed(0)
    c = 0.5
    x = (1 - 0.8) * c + 0.8 * torch.randn(1, 1, 256, 256, generator=generator)
    denoised = torch.full_like(x, c)
    out = scheduler.step(output_for(x, 0.8, denoised), None, x, generator, return_dict=False)[0]
    assert abs(float(out.mean()) - (1 - 0.4) * c) < 0.01
    assert abs(float(out.std()) - 0.4) < 0.01
    last = scheduler.step(output_for(out, 0.4, denoised), None, out, generator, False)[0]
    assert torch.allclose(last, denoised)  # into 0: the denoised estimate


# -- er_sde -----------------------------------------------------------------------------------
# With y = x / alpha and lambda = sigma / alpha, a noise-free ER-SDE step integrates
# dy/dlambda = (y - D(lambda)) phi'(lambda) / phi(lambda) (phi: its noise scaler), whose exact
# solution is y_t = r y_s + D_t - r D_s - D' phi_t int_s^t dlambda / phi (r = phi_t / phi_s)
# for estimates D linear in lambda: the second stage must reproduce it.


def er_phi(lam: torch.Tensor) -> torch.Tensor:
    return lam * (lam.pow(0.3).exp() + 10.0)


def test_er_sde_keeps_the_noise_level_of_the_next_step() -> None:
    """For a perfect denoiser of one point c, every step lands on the next level's marginal
    (mean (1 - sigma) c, spread sigma), whatever the stage."""
    from easel.models.flow_samplers import FlowERSDEScheduler

    scheduler = FlowERSDEScheduler(shift=3.0)
    scheduler.set_timesteps(4)
    scheduler.sigmas = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0])
    first = float(scheduler.sigmas[0])
    assert 0.9999 < first < 1.0  # moved off 1: 3t / (1 + 2t) at t = 1 - 1e-4
    assert math.isclose(first, 3 * 0.9999 / (1 + 2 * 0.9999), rel_tol=1e-6)
    generator = torch.Generator().manual_seed(0)
    c = 0.5
    x = (1 - first) * c + first * torch.randn(1, 1, 256, 256, generator=generator)
    denoised = torch.full_like(x, c)
    for i, level in enumerate([0.75, 0.5, 0.25]):
        sigma = float(scheduler.sigmas[i])
        x = scheduler.step(output_for(x, sigma, denoised), None, x, generator, False)[0]
        assert abs(float(x.mean()) - (1 - level) * c) < 0.01
        assert abs(float(x.std()) - level) < 0.01
    last = scheduler.step(output_for(x, 0.25, denoised), None, x, generator, False)[0]
    assert torch.allclose(last, denoised)  # into 0: the denoised estimate


def test_er_sde_second_stage_is_exact_for_estimates_linear_in_lambda() -> None:
    from easel.models.flow_samplers import FlowERSDEScheduler

    sigmas = torch.tensor([0.8, 0.6, 0.4, 0.0])
    lams = sigmas / (1 - sigmas)
    a, b = 0.3, -0.2

    def estimate(lam: torch.Tensor) -> torch.Tensor:
        return torch.full((1, 1, 2, 2), float(a + b * lam))

    scheduler = FlowERSDEScheduler()
    scheduler.s_noise = 0.0
    scheduler.set_timesteps(3)
    scheduler.sigmas = sigmas.clone()
    scheduler._step_index = 1
    scheduler._old_denoised = estimate(lams[0])
    x = torch.full((1, 1, 2, 2), 0.9)
    out = scheduler.step(output_for(x, 0.6, estimate(lams[1])), None, x, return_dict=False)[0]

    lam_s, lam_t = lams[1].double(), lams[2].double()
    grid = torch.linspace(float(lam_t), float(lam_s), 200_001, dtype=torch.float64)
    integral = torch.trapezoid(1 / er_phi(grid), grid)  # int_t^s dlambda / phi
    r = er_phi(lam_t) / er_phi(lam_s)
    y_s = 0.9 / (1 - 0.6)
    d_s, d_t = a + b * lam_s, a + b * lam_t
    y_t = r * y_s + d_t - r * d_s + b * er_phi(lam_t) * integral
    expected = (1 - 0.4) * y_t
    # ER-SDE's own integral is a 200-point Riemann sum, so agreement is to its accuracy
    assert abs(float(out.flatten()[0]) - float(expected)) < 5e-4
    first_order = (1 - 0.4) * (r * y_s + (1 - r) * d_s)
    assert abs(float(first_order) - float(expected)) > 1e-2  # the second stage matters
