"""ComfyUI's samplers for flow models that diffusers has no scheduler for, as schedulers the
sampler loop can step:

- `res_multistep`: a second-order multistep exponential integrator (RES, arXiv 2308.02157) on
  the denoised estimates, Euler on the first step and into 0 (diffusers' DPM-Solver++ 2M is
  the nearest, with other coefficients); eta 0, so deterministic;
- `euler_ancestral` on flow models (ComfyUI's rectified-flow ancestral step): an Euler step
  to a lower level, then fresh noise back up to the next level, from the run's generator.

- `er_sde`: the extended reverse-time SDE solver (ER-SDE-Solver-3, arXiv 2309.06169, Cui et
  al.), as ComfyUI runs it on flow models: up to third order in lambda = sigma / (1 - sigma),
  with its noise scaler lambda (e^(lambda^0.3) + 10) and fresh noise every step; the first
  level is moved off 1 (where lambda is infinite) to the shifted level of t = 1 - 1e-4.

Hand-written because diffusers has none of them. They step only through given noise levels
(`follow_sigmas` sets them: KSampler's schedules and custom sampling's SIGMAS), as ComfyUI's
k-diffusion samplers do.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FlowLevelsScheduler:
    """The scheduler interface the sampler loop uses: `set_timesteps`, `step`, `sigmas`,
    `timesteps`, `order`, `scale_noise`, `config`; subclasses implement `advance`."""

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
    def from_config(cls, config: dict[str, Any], **_options: Any) -> Any:
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

    def step(
        self,
        model_output: Any,
        timestep: Any,
        sample: Any,
        generator: Any = None,
        return_dict: bool = True,
    ) -> Any:
        import torch

        if self._step_index is None:
            self._step_index = self._begin_index
        i = self._step_index
        sample = sample.to(torch.float32)
        sigma, sigma_next = float(self.sigmas[i]), float(self.sigmas[i + 1])
        denoised = sample - sigma * model_output.to(torch.float32)  # flow: x0 = x - sigma v
        prev = self.advance(i, sample, denoised, sigma, sigma_next, generator)
        self._step_index = i + 1
        prev = prev.to(model_output.dtype)
        return (prev,) if not return_dict else SimpleNamespace(prev_sample=prev)

    def advance(
        self, i: int, x: Any, denoised: Any, sigma: float, sigma_next: float, generator: Any
    ) -> Any:
        raise NotImplementedError


class FlowResMultistepScheduler(FlowLevelsScheduler):
    """ComfyUI's res_multistep (eta 0)."""

    def advance(
        self, i: int, x: Any, denoised: Any, sigma: float, sigma_next: float, generator: Any
    ) -> Any:
        import torch

        if sigma_next == 0.0 or self._old_denoised is None:
            prev = x + (x - denoised) / sigma * (sigma_next - sigma)  # Euler
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
            prev = torch.exp(-h) * x + h * (b1 * denoised + b2 * self._old_denoised)
        self._old_denoised = denoised
        return prev


class FlowEulerAncestralScheduler(FlowLevelsScheduler):
    """ComfyUI's euler_ancestral on flow models (eta 1, s_noise 1): down to
    sigma_down = sigma_next^2 / sigma, then noise back up to sigma_next; the last step into 0
    is the denoised estimate."""

    eta = 1.0

    def advance(
        self, i: int, x: Any, denoised: Any, sigma: float, sigma_next: float, generator: Any
    ) -> Any:
        import torch

        if sigma_next == 0.0:
            return denoised
        sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * self.eta)
        alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
        renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
        ratio = sigma_down / sigma
        x = ratio * x + (1 - ratio) * denoised
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu")
        return (alpha_next / alpha_down) * x + noise.to(x.device) * renoise


class FlowERSDEScheduler(FlowLevelsScheduler):
    """ComfyUI's er_sde on flow models (s_noise 1, three stages)."""

    max_stage = 3
    s_noise = 1.0
    points = 200  # the Riemann sums of the second- and third-stage integrals

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0) -> None:
        self.shift = shift
        self._old_derivative: Any = None
        super().__init__(num_train_timesteps)

    @classmethod
    def from_config(cls, config: dict[str, Any], **_options: Any) -> Any:
        return cls(int(config.get("num_train_timesteps", 1000)), float(config.get("shift", 1.0)))

    def _first_level(self) -> float:
        """The shifted level of t = 1 - 1e-4, ComfyUI's stand-in for a first level of 1."""
        t = 1.0 - 1e-4
        return self.shift * t / (1 + (self.shift - 1) * t)

    # Levels and timesteps are set by set_timesteps and by follow_sigmas (a SIGMAS value):
    # either way a first level of 1 is moved, and the model is called at the moved level.
    @property  # type: ignore[override]
    def sigmas(self) -> Any:
        return self._sigmas

    @sigmas.setter
    def sigmas(self, levels: Any) -> None:
        if levels is not None and len(levels) > 1 and float(levels[0]) >= 1.0:
            levels = levels.clone()
            levels[0] = self._first_level()
        self._sigmas = levels

    @property  # type: ignore[override]
    def timesteps(self) -> Any:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, values: Any) -> None:
        train = self.config.num_train_timesteps
        if values is not None and len(values) and float(values[0]) >= train:
            values = values.clone()
            values[0] = self._first_level() * train
        self._timesteps = values

    def set_timesteps(self, num_inference_steps: int, device: Any = None, **_: Any) -> None:
        super().set_timesteps(num_inference_steps, device)
        self._old_derivative = None

    @staticmethod
    def scaler(lam: Any) -> Any:
        """ER-SDE's noise scaler function of lambda."""
        return lam * ((lam**0.3).exp() + 10.0)

    def advance(
        self, i: int, x: Any, denoised: Any, sigma: float, sigma_next: float, generator: Any
    ) -> Any:
        import torch

        old_denoised, self._old_denoised = self._old_denoised, denoised
        if sigma_next == 0.0:
            return denoised
        levels = self.sigmas.to(torch.float32)
        lams = levels / (1.0 - levels)  # sigma / alpha
        lam_s, lam_t = lams[i], lams[i + 1]
        alpha_t = 1.0 - sigma_next
        ratio = self.scaler(lam_t) / self.scaler(lam_s)
        x = (alpha_t / (1.0 - sigma)) * ratio * x + alpha_t * (1 - ratio) * denoised
        stage = min(self.max_stage, i + 1)
        if stage >= 2 and old_denoised is not None:
            dt = lam_t - lam_s
            width = -dt / self.points
            grid = lam_t + torch.arange(self.points, dtype=torch.float32) * width
            scaled = self.scaler(grid)
            derivative = (denoised - old_denoised) / (lam_s - lams[i - 1])
            integral = torch.sum(1 / scaled) * width
            x = x + alpha_t * (dt + integral * self.scaler(lam_t)) * derivative
            if stage >= 3 and self._old_derivative is not None:
                moment = torch.sum((grid - lam_s) / scaled) * width
                second = (derivative - self._old_derivative) / ((lam_s - lams[i - 2]) / 2)
                x = x + alpha_t * (dt**2 / 2 + moment * self.scaler(lam_t)) * second
            self._old_derivative = derivative
        if self.s_noise > 0:
            spread = (lam_t**2 - lam_s**2 * ratio**2).clamp(min=0).sqrt()
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu")
            x = x + alpha_t * noise.to(x.device) * self.s_noise * spread
        return x
