"""The denoising loop: a diffusers scheduler driving a UNet with classifier-free guidance.

Like k-diffusion's samplers, `denoise` is one function of (model, noise, schedule, guidance)
with a per-step callback, testable without any node or server around it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StepCallback = Callable[[int, int, Any], None]


def make_scheduler(class_name: str, options: dict[str, Any], base_config: dict[str, Any]) -> Any:
    """`class_name.from_config(model's scheduler config, **options)` (configuration is data)."""
    import diffusers

    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    return cls.from_config(config, **options)


@dataclass
class Cond:
    """What the UNet is called with for one side of the guidance. `control` is the
    conditioning's ControlNet chain (`cond["control"]`, see easel.models.controlnet)."""

    encoder_hidden_states: Any
    added: dict[str, Any] | None
    control: Any = None


def unet_condition(unet: Any, cond: dict[str, Any], batch: int, device: Any, dtype: Any) -> Cond:
    """UNet keyword inputs for a CONDITIONING: text embeddings, or image embeddings for a
    decoder conditioned on them (Kandinsky 2.2 / unCLIP style)."""
    config = unet.config

    def batched(value: Any) -> Any:
        value = value.to(device=device, dtype=dtype)
        if value.shape[0] == batch:
            return value
        if value.shape[0] == 1:
            return value.expand(batch, *value.shape[1:])
        raise ValueError(f"conditioning batch {value.shape[0]} does not match latent batch "
                         f"{batch}")

    wants_image = (getattr(config, "addition_embed_type", None) == "image"
                   or getattr(config, "encoder_hid_dim_type", None) == "image_proj")
    added = None
    hidden = None
    if wants_image:
        if cond.get("image_embeds") is None:
            raise ValueError("this model is a decoder conditioned on CLIP image embeddings: "
                             "feed it the conditioning of a PriorSample node")
        added = {"image_embeds": batched(cond["image_embeds"])}
    if getattr(config, "encoder_hid_dim_type", None) != "image_proj":
        if cond.get("embeds") is None:
            raise ValueError("this model needs text embeddings (a TextEncode conditioning)")
        hidden = batched(cond["embeds"])
        if hidden.shape[-1] != config.cross_attention_dim:
            raise ValueError(f"text embeddings have width {hidden.shape[-1]} but the model "
                             f"expects {config.cross_attention_dim}: was the CLIP from "
                             "another checkpoint?")
    return Cond(hidden, added, cond.get("control"))


def _stack(a: Cond, b: Cond) -> Cond | None:
    """Both sides as one batch (uncond first, as diffusers pipelines do), or None if shapes
    differ (prompts of different lengths in chunks)."""
    import torch

    if (a.encoder_hidden_states is None) != (b.encoder_hidden_states is None):
        return None
    if a.control is not b.control:
        return None  # different ControlNet chains: each side is run on its own
    hidden = None
    if a.encoder_hidden_states is not None:
        if a.encoder_hidden_states.shape != b.encoder_hidden_states.shape:
            return None
        hidden = torch.cat([a.encoder_hidden_states, b.encoder_hidden_states])
    added = None
    if a.added is not None and b.added is not None:
        added = {k: torch.cat([a.added[k], b.added[k]]) for k in a.added}
    return Cond(hidden, added, a.control)


def timesteps_for(scheduler: Any, steps: int, denoise: float, device: Any) -> tuple[Any, int]:
    """Timesteps to run and the index they start at: `steps` steps of a schedule of
    `steps / denoise` (so image-to-image runs the number of steps asked for)."""
    total = steps if denoise >= 1.0 else max(steps, int(steps / denoise))
    scheduler.set_timesteps(total, device=device)
    start = (total - steps) * scheduler.order
    if start and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:], start


def denoise(
    unet: Any,
    scheduler: Any,
    *,
    noise: Any,
    positive: dict[str, Any],
    negative: dict[str, Any] | None,
    cfg: float,
    steps: int,
    denoise_strength: float = 1.0,
    init_latents: Any = None,
    generator: Any = None,
    callback: StepCallback | None = None,
) -> Any:
    """Sample latents. `noise` comes from a seeded CPU generator; `init_latents` (scaled
    latents) start image-to-image when `denoise_strength` < 1. Returns scaled latents."""
    import inspect

    import torch

    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    batch = noise.shape[0]
    timesteps, _ = timesteps_for(scheduler, steps, denoise_strength, device)
    noise = noise.to(device=device, dtype=torch.float32)
    if init_latents is not None and denoise_strength < 1.0:
        latents = scheduler.add_noise(init_latents.to(device=device, dtype=torch.float32), noise,
                                      timesteps[:1].repeat(batch))
    else:
        latents = noise * scheduler.init_noise_sigma
    latents = latents.to(dtype)

    guided = cfg > 1.0 and negative is not None
    pos = unet_condition(unet, positive, batch, device, dtype)
    neg = unet_condition(unet, negative, batch, device, dtype) if guided else None
    both = _stack(neg, pos) if neg is not None else None
    step_kwargs: dict[str, Any] = {}
    if generator is not None and "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generator

    total = len(timesteps)
    step = [0]

    def predict(x: Any, t: Any, cond: Cond) -> Any:
        extra: dict[str, Any] = {}
        if cond.control:
            from easel.models.controlnet import control_residuals

            extra = control_residuals(cond.control, x, t, cond.encoder_hidden_states,
                                      cond.added, step[0], total)
        return unet(x, t, encoder_hidden_states=cond.encoder_hidden_states,
                    added_cond_kwargs=cond.added, return_dict=False, **extra)[0]

    with torch.inference_mode():
        for i, t in enumerate(timesteps):
            step[0] = i
            if guided and both is not None:
                x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
                uncond, cond = predict(x, t, both).chunk(2)
                noise_pred = uncond + cfg * (cond - uncond)
            elif guided and neg is not None:
                x = scheduler.scale_model_input(latents, t)
                uncond, cond = predict(x, t, neg), predict(x, t, pos)
                noise_pred = uncond + cfg * (cond - uncond)
            else:
                noise_pred = predict(scheduler.scale_model_input(latents, t), t, pos)
            latents = scheduler.step(noise_pred, t, latents, **step_kwargs,
                                     return_dict=False)[0]
            if callback is not None:
                callback(i + 1, total, latents)
    return latents
