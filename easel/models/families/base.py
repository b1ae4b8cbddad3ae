"""What the registry knows of one model family: recognition, configs, text conditioning,
latent format and model sampling, as data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LatentFormat:
    """The latent space of a family's VAE: channels, scaling and shift, spatial factor."""

    channels: int = 4
    scaling_factor: float = 0.18215
    shift_factor: float = 0.0
    factor: int = 8


@dataclass(frozen=True)
class TextPart:
    """One text tower of a family: its key ("l", "g", or "" for the only one), the hidden layer
    used (-1 last, -2 penultimate) and whether the final layer norm is applied to it, whether
    its pooled output is the conditioning's pooled embedding, and its tokenizer's pad token."""

    key: str
    layer: int = -1
    layer_norm: bool = True
    pooled: bool = False
    pad_token: str = "<|endoftext|>"
    hidden_act: str = "quick_gelu"  # OpenAI CLIP-L: quick_gelu; OpenCLIP H and bigG: gelu


@dataclass(frozen=True)
class Family:
    """One architecture. `recognise` says whether a single file's keys are this family's;
    the registry tries families in order, so the more specific come first."""

    name: str  # "sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "sd1-inpaint", ...
    label: str  # what users read: "Stable Diffusion 1.x"
    latent: LatentFormat = field(default_factory=LatentFormat)
    prediction_type: str = "epsilon"  # or "v_prediction"
    text: tuple[TextPart, ...] = (TextPart(""),)
    added_cond: str | None = None  # None, "sdxl" (size time ids), "sdxl_refiner" (aesthetic)
    inpaint: bool = False  # the UNet takes latent + mask + masked-image latent (9 channels)
    pipeline_class: str = "StableDiffusionPipeline"  # the matching diffusers pipeline
    scheduler_config: Mapping[str, Any] = field(default_factory=dict)
    recognise: Callable[[Mapping[str, Any]], bool] | None = field(
        default=None, compare=False, repr=False
    )

    @property
    def is_sdxl(self) -> bool:
        return self.added_cond is not None
