"""The denoising loop: a diffusers scheduler driving a UNet with classifier-free guidance.

Like k-diffusion's samplers, `denoise` is one function of (model, noise, schedule, guidance)
with a per-step callback, testable without any node or server around it. Family differences are
data it is handed: SDXL's added conditioning (`conditioning.py`), an inpainting UNet's extra
input channels and a noise mask (`Inpaint`), a window of the schedule (`Window`,
KSamplerAdvanced), ControlNet residuals (easel.models.controlnet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from easel.models.conditioning import Cond, stack, unet_condition

StepCallback = Callable[[int, int, Any], None]


def make_scheduler(class_name: str, options: dict[str, Any], base_config: dict[str, Any]) -> Any:
    """`class_name.from_config(model's scheduler config, **options)` (configuration is data)."""
    import diffusers

    cls = getattr(diffusers, class_name)
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    return cls.from_config(config, **options)


@dataclass(frozen=True)
class Window:
    """Which steps of a `steps`-step schedule to run (KSamplerAdvanced): [start, end), whether
    to add noise to the input latent first, and whether to stop with the noise left in (else
    the last step denoises fully, as ComfyUI does when it ends early)."""

    start: int = 0
    end: int | None = None
    add_noise: bool = True
    leftover_noise: bool = False


@dataclass
class Inpaint:
    """Inpainting inputs. `mask` [B,1,h,w] at latent size, 1 where to paint. With `concat`
    (an inpainting UNet's mask + masked-image latent channels) the UNet sees them; with
    `blend` the latents outside the mask are reset to the source latent (noised to the current
    step) after every step, as diffusers' inpainting pipeline does for ordinary UNets."""

    mask: Any
    source: Any  # the source latents (scaled), blended back outside the mask
    concat: Any = None  # [B, 1 + C, h, w]: mask then masked-image latents
    blend: bool = True


def timesteps_for(scheduler: Any, steps: int, denoise: float, device: Any,
                  window: Window | None = None) -> tuple[Any, int]:
    """Timesteps to run and the index they start at: `steps` steps of a schedule of
    `steps / denoise` (so image-to-image runs the number of steps asked for), or the window's
    steps of a `steps`-step schedule."""
    if window is not None:
        scheduler.set_timesteps(steps, device=device)
        order = scheduler.order
        end = steps if window.end is None else min(window.end, steps)
        start = window.start * order
        if start and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        if end < steps and not window.leftover_noise:
            sigmas = getattr(scheduler, "sigmas", None)
            if sigmas is not None and len(sigmas) > end * order:
                sigmas[end * order] = 0.0  # the last step goes to sigma 0 (ComfyUI's way)
        return scheduler.timesteps[start:end * order], start
    total = steps if denoise >= 1.0 else max(steps, int(steps / denoise))
    scheduler.set_timesteps(total, device=device)
    start = (total - steps) * scheduler.order
    if start and hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    return scheduler.timesteps[start:], start


def initial_latents(scheduler: Any, noise: Any, timesteps: Any, *, init_latents: Any,
                    denoise_strength: float, window: Window | None) -> Any:
    """The latents the loop starts from: pure noise for a full denoise, the input latent noised
    to the first step for image-to-image and windows, or the input latent as it is."""
    batch = noise.shape[0]
    if window is not None and init_latents is not None:
        if not window.add_noise:
            return init_latents
        if window.start == 0:
            return init_latents + noise * scheduler.init_noise_sigma
        return scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(batch))
    if init_latents is not None and denoise_strength < 1.0:
        return scheduler.add_noise(init_latents, noise, timesteps[:1].repeat(batch))
    return noise * scheduler.init_noise_sigma


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
    forward: Any = None,
    family: Any = None,
    window: Window | None = None,
    inpaint: Inpaint | None = None,
    vae_factor: int = 8,
) -> Any:
    """Sample latents. `noise` comes from a seeded CPU generator; `init_latents` (scaled
    latents) start image-to-image when `denoise_strength` < 1, or a window. `forward` is what
    to call instead of `unet` (LoRA patches bound); `family` gives the added conditioning;
    `vae_factor` the image size SDXL's size conditioning defaults to.
    Returns scaled latents."""
    import inspect

    import torch

    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    call = forward if forward is not None else unet
    batch = noise.shape[0]
    timesteps, _ = timesteps_for(scheduler, steps, denoise_strength, device, window)
    noise = noise.to(device=device, dtype=torch.float32)
    if init_latents is not None:
        init_latents = init_latents.to(device=device, dtype=torch.float32)
    latents = initial_latents(scheduler, noise, timesteps, init_latents=init_latents,
                              denoise_strength=denoise_strength, window=window).to(dtype)
    size = (noise.shape[2] * vae_factor, noise.shape[3] * vae_factor)  # the image's pixels

    guided = cfg > 1.0 and negative is not None
    pos = unet_condition(unet, positive, batch, device, dtype, family=family, pixel_size=size)
    neg = unet_condition(unet, negative, batch, device, dtype, family=family, pixel_size=size,
                         negative=True) if guided and negative is not None else None
    if neg is not None and not neg.control and positive.get("control_apply_to_uncond"):
        from easel.models.controlnet import control_for_uncond  # ControlNetApply, as ComfyUI

        neg.control = control_for_uncond(positive, negative)
    both = stack(neg, pos) if neg is not None else None
    step_kwargs: dict[str, Any] = {}
    if generator is not None and "generator" in inspect.signature(scheduler.step).parameters:
        step_kwargs["generator"] = generator
    concat = None
    if inpaint is not None and inpaint.concat is not None:
        concat = inpaint.concat.to(device=device, dtype=dtype)
    total = len(timesteps)
    step = [0]

    def predict(x: Any, t: Any, cond: Cond) -> Any:
        extra: dict[str, Any] = {}
        if cond.control:
            from easel.models.controlnet import control_residuals

            extra = control_residuals(cond.control, x, t, cond.encoder_hidden_states,
                                      cond.added, step[0], total)
        if concat is not None:
            x = torch.cat([x, concat.repeat(x.shape[0] // concat.shape[0], 1, 1, 1)], dim=1)
        return call(x, t, encoder_hidden_states=cond.encoder_hidden_states,
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
            if inpaint is not None and inpaint.blend:
                latents = blend_outside_mask(scheduler, latents, inpaint, noise, timesteps, i)
            if callback is not None:
                callback(i + 1, total, latents)
    return latents


def blend_outside_mask(scheduler: Any, latents: Any, inpaint: Inpaint, noise: Any,
                       timesteps: Any, i: int) -> Any:
    """Outside the mask, the source latent noised to the next step (unnoised after the last),
    as diffusers' StableDiffusionInpaintPipeline does."""
    source = inpaint.source.to(device=latents.device, dtype=noise.dtype)
    if i < len(timesteps) - 1:
        source = scheduler.add_noise(source, noise, timesteps[i + 1:i + 2].repeat(
            noise.shape[0]))
    mask = inpaint.mask.to(device=latents.device, dtype=latents.dtype)
    return (1 - mask) * source.to(latents.dtype) + mask * latents
