"""Stage `upscaler`: trains a 2x pixel-space diffusion super-resolution UNet (Imagen-style cascade).

One model serves both 32 -> 64 and 64 -> 128: it is trained on 64x64 windows of both, with
the low-resolution image upsampled and concatenated to the noisy input's channels.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from easel.zoo.shapes.components import load_vae
from easel.zoo.shapes.configs import NATIVE_SIZE, UPSCALER_UPSAMPLE, pixel_scheduler_config
from easel.zoo.shapes.data import make_batch, step_seed
from easel.zoo.shapes.training import (
    RunOptions,
    StageTrainer,
    add_noise,
    autocast,
    images_to_tensor,
    tensor_to_images,
    torch_generator,
)

LOW_RES_NOISE = 0.03  # augmentation of the low-res condition (in [-1, 1] units)


def pixel_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(pixel_scheduler_config())


def upsample(low: torch.Tensor) -> torch.Tensor:
    return F.interpolate(low, scale_factor=2, mode=UPSCALER_UPSAMPLE, align_corners=False)


def training_pair(
    seed: int, n: int, vae: Any, device: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 64x64 / 32x32 windows: half 32->64 scenes, half 64->128 crops.

    32->64 pairs use VAE reconstructions as the low-res input, as in the real cascade.
    """
    half = n // 2
    low32 = make_batch(seed, half, NATIVE_SIZE).images
    high64 = make_batch(seed, half, 2 * NATIVE_SIZE).images
    with torch.no_grad():
        x = images_to_tensor(low32, device)
        recon = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    rest = n - half
    low64 = make_batch(seed + 1, rest, 2 * NATIVE_SIZE).images
    high128 = make_batch(seed + 1, rest, 4 * NATIVE_SIZE).images
    offsets = np.random.default_rng(seed).integers(0, NATIVE_SIZE + 1, size=(rest, 2))
    low_crops = np.stack(
        [im[y : y + 32, x : x + 32] for im, (y, x) in zip(low64, offsets, strict=True)]
    )
    high_crops = np.stack(
        [
            im[2 * y : 2 * y + 64, 2 * x : 2 * x + 64]
            for im, (y, x) in zip(high128, offsets, strict=True)
        ]
    )
    low = torch.cat([recon.float(), images_to_tensor(low_crops, device)])
    high = torch.cat([images_to_tensor(high64, device), images_to_tensor(high_crops, device)])
    low = low + LOW_RES_NOISE * torch.randn(low.shape, generator=gen, device=device)
    return high, low


def train_upscaler(options: RunOptions) -> None:
    from diffusers import UNet2DModel

    device = options.device
    vae = load_vae(options.work_dir, device)
    scheduler = pixel_scheduler()
    torch.manual_seed(options.seed)
    unet = cast(Any, UNet2DModel)(**options.family.upscaler_kwargs()).to(device)
    budget = options.budget("upscaler")
    params = list(unet.parameters())
    trainer = StageTrainer("upscaler", options, {"upscaler": unet}, params, budget, use_ema=True)

    def step_fn(step: int) -> dict[str, float]:
        gen = torch_generator(options.seed, "upscaler", step, device)
        high, low = training_pair(
            step_seed(options.seed, "upscaler", step), budget.batch_size, vae, device, gen
        )
        noisy, noise, timesteps = add_noise(scheduler, high, gen)
        with autocast(device):
            pred = unet(torch.cat([noisy, upsample(low)], dim=1), timesteps).sample
        loss = F.mse_loss(pred.float(), scheduler.get_velocity(high, noise, timesteps))
        loss.backward()
        return {"loss": float(loss.detach())}

    trainer.run(step_fn)
    from easel.zoo.shapes.train_unet import save_ema_model

    out = options.model_dir("upscaler")
    save_ema_model(trainer, unet, out)
    scheduler.save_pretrained(options.stage_dir("upscaler") / "scheduler")
    unet = UNet2DModel.from_pretrained(out).to(device).eval()
    metrics = evaluate_upscaler(unet, vae, options) if options.evaluate else {}
    trainer.log(f"done: {metrics}")
    trainer.write_progress({"eval": metrics})


@torch.no_grad()
def upscale(
    unet: Any,
    images: np.ndarray,
    steps: int = 20,
    generator: torch.Generator | None = None,
    sampler: str = "ddim",
) -> np.ndarray:
    """2x super-resolution of uint8 images (N x H x W x 3) by conditional diffusion."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler
    from diffusers.utils.torch_utils import randn_tensor

    scheduler = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler}[sampler].from_config(
        pixel_scheduler_config()
    )
    device = unet.device
    low = upsample(images_to_tensor(images, str(device)))
    x = randn_tensor(low.shape, generator=generator, device=device) * scheduler.init_noise_sigma
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        model_in = torch.cat([scheduler.scale_model_input(x, t), low], dim=1)
        x = scheduler.step(unet(model_in, t).sample, t, x).prev_sample
    return tensor_to_images(x)


@torch.no_grad()
def evaluate_upscaler(unet: Any, vae: Any, options: RunOptions, n: int = 50) -> dict[str, float]:
    """PSNR against the true 64px render (vs bilinear), and analyser accuracy at 64 and 128."""
    from easel.zoo.shapes.evaluate import adherence, eval_scenes

    n = 4 if options.tiny else n
    device = options.device
    scenes = eval_scenes(n, options.seed, held_out="allow", two_object_prob=0.25)
    from easel.zoo.shapes.data import render

    low = render(scenes, NATIVE_SIZE, jitter=False)
    truth64 = render(scenes, 2 * NATIVE_SIZE, jitter=False)
    recon = tensor_to_images(
        vae.decode(vae.encode(images_to_tensor(low, device)).latent_dist.mean).sample
    )
    gen = torch.Generator("cpu").manual_seed(options.seed)
    up64 = upscale(unet, recon, generator=gen)
    up128 = upscale(unet, up64, generator=gen)
    bilinear = tensor_to_images(upsample(images_to_tensor(recon, device)))

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2)
        return float(10 * np.log10(255.0**2 / max(float(mse), 1e-8)))

    return {
        "psnr_64": round(psnr(up64, truth64), 2),
        "psnr_64_bilinear": round(psnr(bilinear, truth64), 2),
        "all_accuracy_64": round(adherence(up64, scenes)["all_accuracy"], 4),
        "all_accuracy_128": round(adherence(up128, scenes)["all_accuracy"], 4),
        "all_accuracy_32_vae": round(adherence(recon, scenes)["all_accuracy"], 4),
        "n": n,
    }
