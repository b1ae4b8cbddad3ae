"""Diffusion super-resolution (the cascade stages of Imagen and DALL-E 2): a pixel-space UNet
denoises a high-resolution image conditioned on the upsampled low-resolution one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def upscale_with_model(
    handle: Any,
    image: Any,
    *,
    seed: int,
    steps: int,
    callback: Callable[[int, int], None] | None = None,
) -> Any:
    """`image` [B, 3, H, W] in [0, 1] -> [B, 3, H*f, W*f] in [0, 1]. The UNet input is the noisy
    image concatenated (channels) with the low-res image upsampled by `handle.upsample`,
    both in [-1, 1]."""
    import diffusers
    import torch
    import torch.nn.functional as F

    unet = handle.manager.place(handle.unet)
    param = next(unet.parameters())
    device, dtype = param.device, param.dtype
    batch, _, height, width = image.shape
    size = (height * handle.factor, width * handle.factor)
    multiple = 2 ** (len(unet.config.block_out_channels) - 1)
    if size[0] % multiple or size[1] % multiple:
        raise ValueError(
            f"the upscaled size {size[1]}x{size[0]} must be a multiple of "
            f"{multiple} for this upscaler"
        )
    mode = handle.upsample if handle.upsample in ("nearest", "bilinear", "bicubic") else "bicubic"
    low = F.interpolate(
        image.float() * 2 - 1,
        size=size,
        mode=mode,
        **({} if mode == "nearest" else {"align_corners": False}),
    )
    low = low.clamp(-1, 1).to(device, dtype)
    cls = getattr(diffusers, handle.scheduler_class)
    scheduler = cls.from_config(
        {k: v for k, v in handle.scheduler_config.items() if not k.startswith("_")}
    )
    scheduler.set_timesteps(steps, device=device)
    generator = torch.Generator("cpu").manual_seed(seed)
    noise = torch.randn((batch, 3, *size), generator=generator, dtype=torch.float32)
    x = (noise * scheduler.init_noise_sigma).to(device, dtype)
    total = len(scheduler.timesteps)
    with torch.inference_mode():
        for i, t in enumerate(scheduler.timesteps):
            model_in = torch.cat([scheduler.scale_model_input(x, t), low], dim=1)
            pred = unet(model_in, t, return_dict=False)[0]
            x = scheduler.step(pred, t, x, generator=generator, return_dict=False)[0]
            if callback is not None:
                callback(i + 1, total)
    return (x.float().cpu() / 2 + 0.5).clamp(0, 1)
