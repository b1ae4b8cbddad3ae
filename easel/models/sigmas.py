"""SIGMAS values for ComfyUI's custom sampling: a flow model's shifted levels, levels typed
in (ManualSigmas), split levels (SplitSigmas). The schedule names are the node layer's
(easel.nodes.custom_sampling.model_sigmas, BasicScheduler).

A SIGMAS value is a 1-D float32 CPU tensor of descending noise levels, usually ending in 0.0
(ComfyUI's convention): k-diffusion sigmas for eps / v models, the flow interpolation weight
in [0, 1] for flow models, already shifted.
"""

from __future__ import annotations

import re
from typing import Any

from easel.models.sampling import FlowSchedule, flow_config, make_scheduler, set_timesteps

DEFAULT_IMAGE_TOKENS = 4096  # a schedule made without an image: the 1024x1024 one (ComfyUI)


def steps_of(steps: int, denoise: float) -> int:
    """The length of the full schedule whose last `steps` steps denoise `denoise` of the way."""
    return steps if denoise >= 1.0 else int(steps / denoise)


def flow_levels(
    config: dict[str, Any], options: dict[str, Any], linear: bool, total: int, tokens: int
) -> Any:
    """A flow model's shifted noise levels for `total` steps (FlowMatchEuler's own)."""
    class_name = "FlowMatchEulerDiscreteScheduler"
    config, flow = flow_config(config, class_name, linear, tokens)
    scheduler = make_scheduler(class_name, options, config)
    set_timesteps(scheduler, total, "cpu", FlowSchedule(flow.linear, flow.mu))
    return scheduler.sigmas


NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def parse_sigmas(text: str) -> Any:
    """ComfyUI's ManualSigmas: every number in `text`, in order."""
    import torch

    values = [float(v) for v in NUMBER.findall(text)]
    if not values:
        raise ValueError("no numbers in the sigmas text (write them as '1.0, 0.75, 0.5, 0')")
    if any(v < 0 for v in values):
        raise ValueError("sigmas are noise levels: none may be negative")
    return torch.tensor(values, dtype=torch.float32)


def split(sigmas: Any, step: int) -> tuple[Any, Any]:
    """ComfyUI's SplitSigmas: levels up to and including `step`, and from `step` on."""
    return sigmas[: step + 1].clone(), sigmas[step:].clone()


def split_denoise(sigmas: Any, denoise: float) -> tuple[Any, Any]:
    """ComfyUI's SplitSigmasDenoise: the last round(steps * denoise) steps are the low part."""
    steps = max(len(sigmas) - 1, 0)
    low_steps = round(steps * denoise)
    return sigmas[: steps - low_steps + 1].clone(), sigmas[steps - low_steps :].clone()
