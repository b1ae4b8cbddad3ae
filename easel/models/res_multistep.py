"""ComfyUI's `res_multistep` sampler for flow models, as a scheduler the sampler loop can
step: a second-order multistep exponential integrator (RES, arXiv 2308.02157) on the denoised
estimates, Euler on the first step and into 0.

Hand-written because diffusers has no RES solver (its DPM-Solver++ 2M is the nearest, with
other coefficients). It steps only through given noise levels (`follow_sigmas` sets them:
KSampler's schedules and custom sampling's SIGMAS), as ComfyUI's k-diffusion samplers do.
With eta 0 (ComfyUI's res_multistep) the step is deterministic.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FlowResMultistepScheduler:
    """The scheduler interface the sampler loop uses: `set_timesteps`, `step`, `sigmas`,
    `timesteps`, `order`, `scale_noise`, `config`."""

    order = 1
    init_noise_sigma = 1.0

    def __init__(self, num_train_timesteps: int = 1000) -> None:
        self.config = SimpleNamespace(
            num_train_timesteps=num_train_timesteps, prediction_type="flow_prediction"
        )
        self.sigmas: Any = None
        self.timesteps: Any = None
        self.num_inference_steps = 0
        self._step_index: int | None = None
        self._begin_index = 0
        self._old_denoised: Any = None

    @classmethod
    def from_config(cls, config: dict[str, Any], **_options: Any) -> FlowResMultistepScheduler:
        return cls(int(config.get("num_train_timesteps", 1000)))

    def set_timesteps(self, num_inference_steps: int, device: Any = None, **_: Any) -> None:
        """Evenly spaced levels 1..0; `follow_sigmas` replaces them with the schedule's."""
        import torch

        self.num_inference_steps = num_inference_steps
        self.sigmas = torch.linspace(1.0, 0.0, num_inference_steps + 1)
        self.timesteps = (self.sigmas[:-1] * self.config.num_train_timesteps).to(device)
        self._step_index, self._old_denoised = None, None

    def set_begin_index(self, begin_index: int = 0) -> None:
        self._begin_index = begin_index

    @property
    def step_index(self) -> int | None:
        return self._step_index

    def scale_noise(self, sample: Any, timestep: Any, noise: Any) -> Any:
        """A sample noised to `timestep` (flow: sigma * noise + (1 - sigma) * sample)."""
        sigma = (timestep.float() / self.config.num_train_timesteps).reshape(-1, 1, 1, 1)
        return sigma * noise + (1.0 - sigma) * sample

    def step(self, model_output: Any, timestep: Any, sample: Any, return_dict: bool = True) -> Any:
        import torch

        if self._step_index is None:
            self._step_index = self._begin_index
        i = self._step_index
        sample = sample.to(torch.float32)
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        denoised = sample - sigma * model_output.to(torch.float32)  # flow: x0 = x - sigma v
        if sigma_next == 0.0 or self._old_denoised is None:
            prev = sample + (sample - denoised) / sigma * (sigma_next - sigma)  # Euler
        else:
            sigma_prev = float(self.sigmas[i - 1])
            t, t_next = -torch.tensor(sigma).log(), -torch.tensor(sigma_next).log()
            t_prev = -torch.tensor(sigma_prev).log()
            h = t_next - t
            c2 = (t_prev - t) / h  # the previous step's length, relative to this one's
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            prev = torch.exp(-h) * sample + h * (b1 * denoised + b2 * self._old_denoised)
        self._old_denoised = denoised
        self._step_index = i + 1
        prev = prev.to(model_output.dtype)
        return (prev,) if not return_dict else SimpleNamespace(prev_sample=prev)
