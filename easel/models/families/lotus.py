"""Lotus (Lotus-D depth, v1.1): a Stable Diffusion 2 UNet fine-tuned to turn an image's latent
into its depth map's latent in one step.

As data: the SD latent format, the SD noise schedule with the network predicting the clean
latent itself (diffusers' prediction type "sample"; ComfyUI's IMG_TO_IMG model sampling: the
network sees the latent unscaled), the one OpenCLIP-H text part its fixed conditioning comes
from, and the task embedding its class-embedding layer takes. A file is recognised by its UNet
(original LDM keys, with or without `model.diffusion_model.`) having a 4-wide `label_emb`: the
task switch SD 2 has no trace of.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models.families.base import Family
from easel.models.families.sd import OPEN_CLIP_H, SD_LATENT

UNET_PREFIXES = ("model.diffusion_model.", "")
TASK_WIDTH = 4  # label_emb.0.0 takes (sin, sin, cos, cos) of the task switch
SCHEDULER_FILE = Path(__file__).resolve().parent / "configs" / "sd_scheduler.json"


def _scheduler() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(SCHEDULER_FILE.read_text())
    config["prediction_type"] = "sample"  # x0: the network's output is the result
    return config


@dataclass(frozen=True)
class LotusFamily(Family):
    """Lotus: the UNet adapter `network` (easel.models.lotus_denoiser) feeds it the task
    embedding and the latent as it is."""

    network: str = "lotus"
    scheduler_config: Mapping[str, Any] = field(default_factory=_scheduler)


LOTUS_D = LotusFamily(
    "lotus-d",
    "Lotus-D (depth from one image, SD 2 UNet)",
    SD_LATENT,
    "sample",
    (OPEN_CLIP_H,),
)

FAMILIES = (LOTUS_D,)


def unet_prefix(state: Mapping[str, Any]) -> str | None:
    """The prefix of a Lotus UNet's LDM keys in `state`, or None when it is not one."""
    for prefix in UNET_PREFIXES:
        conv_in = state.get(prefix + "input_blocks.0.0.weight")
        label = state.get(prefix + "label_emb.0.0.weight")
        if conv_in is None or label is None:
            continue
        if tuple(label.shape)[1:] == (TASK_WIDTH,) and tuple(conv_in.shape)[1:2] == (4,):
            return prefix
    return None


def recognise(state: Mapping[str, Any]) -> LotusFamily | None:
    return LOTUS_D if unet_prefix(state) is not None else None


def task_embedding(prediction: bool = True) -> list[float]:
    """Lotus's task switch as its class embedding takes it: (sin, cos) of the one-hot switch,
    [1, 0] for the prediction (depth) and [0, 1] for reconstructing the image, sines first
    (the Lotus paper's detail-preserving switcher; ComfyUI feeds the prediction one)."""
    switch = (1.0, 0.0) if prediction else (0.0, 1.0)
    return [math.sin(v) for v in switch] + [math.cos(v) for v in switch]
