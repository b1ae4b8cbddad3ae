"""SDTurboScheduler: the noise levels SD-Turbo and SDXL-Turbo were distilled on, for the custom
samplers (SamplerCustom, SamplerCustomAdvanced).

The adversarial-diffusion-distilled models are trained at the timesteps 999, 899, ..., 99;
`steps` of them are taken from the one `denoise` starts at, each turned into the model's noise
level sqrt((1 - alpha_bar_t) / alpha_bar_t) of its own discrete schedule, and 0 is appended
(ComfyUI's SDTurboScheduler). One step is diffusers' SD-Turbo schedule (EulerAncestral with
trailing spacing: timestep 999).
"""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Model, Sigmas

TURBO_TIMESTEPS = tuple(range(999, 0, -100))  # 999, 899, ..., 99: ten levels


def turbo_timesteps(steps: int, denoise: float) -> list[int]:
    """The distilled timesteps to run: `steps` of them, from the one `denoise` starts at
    (denoise 1: 999; 0.5: 499)."""
    start = len(TURBO_TIMESTEPS) - int(len(TURBO_TIMESTEPS) * denoise)
    return list(TURBO_TIMESTEPS[start : start + steps])


def turbo_sigmas(model: Any, steps: int, denoise: float) -> Any:
    """SIGMAS for `model` (a discrete-schedule model: eps or v): the noise levels of
    `turbo_timesteps`, then 0."""
    import torch

    from easel.models.sampling import make_scheduler

    if getattr(model.family, "prediction_type", None) == "flow":
        raise ValueError(
            f"{model.family.label} is a flow-matching model: SDTurboScheduler's levels are "
            "those of SD-Turbo / SDXL-Turbo's discrete schedule (use BasicScheduler)"
        )
    config = {**model.scheduler_config, **model.sampling}
    scheduler = make_scheduler("EulerDiscreteScheduler", {}, config)
    alphas = scheduler.alphas_cumprod.to(torch.float64)
    levels = [float(((1 - alphas[t]) / alphas[t]) ** 0.5) for t in turbo_timesteps(steps, denoise)]
    return torch.tensor([*levels, 0.0], dtype=torch.float32)


@node(category="sampling/custom_sampling/schedulers", outputs={"sigmas": Sigmas})
def SDTurboScheduler(
    model: Model,
    steps: int = Input(1, ge=1, le=10),
    denoise: float = Input(1.0, ge=0.0, le=1.0, step=0.01),
) -> Any:
    """The noise levels SD-Turbo / SDXL-Turbo were distilled on: `steps` of the timesteps
    999, 899, ..., 99 (from 999 at `denoise` 1, from 499 at 0.5, ...) as the model's noise
    levels, then 0. Pair it with SamplerCustom, euler_ancestral and cfg 1 (ComfyUI's
    SDTurboScheduler); fewer levels than `steps` remain when `denoise` starts late."""
    try:
        return turbo_sigmas(model, steps, denoise)
    except ValueError as exc:
        raise NodeError(str(exc), "model") from exc


NODES = [SDTurboScheduler]
