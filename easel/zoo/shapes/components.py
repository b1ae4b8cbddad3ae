"""Loads trained stages from a work directory and assembles them into diffusers pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from easel.zoo.shapes.configs import latent_scheduler_config


def require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: train the `{stage}` stage first "
            f"(python -m easel.zoo train shapes --stage {stage})"
        )
    return path


def load_vae(work_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32) -> Any:
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(require(work_dir / "vae" / "model", "vae"), dtype=dtype)
    return vae.to(device).eval().requires_grad_(False)


def load_clip(work_dir: Path, device: str = "cpu") -> tuple[Any, Any]:
    """The full CLIPModel and its tokenizer."""
    from transformers import CLIPModel, CLIPTokenizer

    path = require(work_dir / "clip" / "model", "clip")
    model = cast(Any, CLIPModel).from_pretrained(path).to(device).eval().requires_grad_(False)
    return model, CLIPTokenizer.from_pretrained(path)


def text_encoder_from_clip(clip: Any) -> Any:
    """A standalone CLIPTextModel (Stable Diffusion's text_encoder) with CLIP's text tower."""
    from transformers import CLIPTextModel

    encoder: Any = cast(Any, CLIPTextModel)(clip.config.text_config)
    # transformers 5 keeps the tower's keys flat in CLIPTextModel; 4.x nests them in text_model.
    target = getattr(encoder, "text_model", encoder)
    target.load_state_dict(clip.text_model.state_dict())
    return encoder.to(device=clip.device, dtype=clip.dtype).eval().requires_grad_(False)


def latent_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(latent_scheduler_config())


def sampling_scheduler(name: str = "euler") -> Any:
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    table = {"euler": EulerDiscreteScheduler, "ddim": DDIMScheduler}
    return table[name].from_config(latent_scheduler_config())


def text_to_image_pipeline(
    vae: Any, clip: Any, tokenizer: Any, unet: Any, sampler: str = "euler"
) -> Any:
    """A StableDiffusionPipeline on the family's components (no safety checker)."""
    from diffusers import StableDiffusionPipeline

    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder_from_clip(clip),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=sampling_scheduler(sampler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def encode_text(
    text_encoder_or_clip: Any, tokenizer: Any, captions: list[str], device: str
) -> torch.Tensor:
    """Last hidden states of the CLIP text tower for padded captions (as SD conditions)."""
    from easel.zoo.shapes.train_clip import tokenize

    inputs = tokenize(tokenizer, captions, device)
    model = getattr(text_encoder_or_clip, "text_model", text_encoder_or_clip)
    return model(input_ids=inputs["input_ids"]).last_hidden_state
