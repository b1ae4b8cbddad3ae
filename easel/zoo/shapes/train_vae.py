"""Stage `vae`: trains the AutoencoderKL (32x32 RGB <-> 8x8x4 latents), object-weighted loss."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from easel.zoo.shapes.data import SceneConfig, make_batch, step_seed
from easel.zoo.shapes.training import (
    RunOptions,
    StageTrainer,
    autocast,
    images_to_tensor,
    tensor_to_images,
    torch_generator,
)

KL_WEIGHT = 5e-4  # per latent element, against per-pixel L1
EDGE_WEIGHT = 4.0  # extra L1 weight on pixels at object edges
OBJECT_WEIGHT = 4.0  # extra L1 weight on object pixels


def _gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def vae_loss(x: torch.Tensor, recon: torch.Tensor, kl: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 weighted up on objects and their edges, L1 on image gradients, plus KL.

    Objects cover 5-15% of an image, so a plain mean lets the background dominate and
    the decoder drifts object colours (yellow -> orange); the object weight stops that, the
    edge weight and the gradient term keep corners square.
    """
    gx, gy = _gradients(x)
    rx, ry = _gradients(recon)
    edges = torch.zeros_like(x[:, :1])
    edges[..., :, 1:] += gx.abs().amax(1, keepdim=True)
    edges[..., 1:, :] += gy.abs().amax(1, keepdim=True)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    background = border.median(dim=-1).values[..., None, None]
    objects = (x - background).abs().amax(1, keepdim=True) > 0.1
    weight = 1 + EDGE_WEIGHT * (edges > 0.1).float() + OBJECT_WEIGHT * objects.float()
    l1 = (weight * (x - recon).abs()).mean()
    grad = (gx - rx).abs().mean() + (gy - ry).abs().mean()
    kl_term = kl.mean() / recon[0, :1].numel()
    return {"l1": l1, "grad": grad, "kl": kl_term, "loss": l1 + grad + KL_WEIGHT * kl_term}


def train_vae(options: RunOptions) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(options.seed)
    vae: Any = cast(Any, AutoencoderKL)(**options.family.vae_kwargs()).to(options.device)
    budget = options.budget("vae")
    trainer = StageTrainer("vae", options, {"vae": vae}, list(vae.parameters()), budget)

    def step_fn(step: int) -> dict[str, float]:
        batch = make_batch(step_seed(options.seed, "vae", step), budget.batch_size)
        x = images_to_tensor(batch.images, options.device)
        gen = torch_generator(options.seed, "vae", step, options.device)
        with autocast(options.device):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample(generator=gen)
            recon = vae.decode(z).sample
        losses = vae_loss(x, recon.float(), posterior.kl().float())
        losses["loss"].backward()
        return {k: float(v.detach()) for k, v in losses.items()}

    trainer.run(step_fn)
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scaling_factor(vae, options))
    vae.save_pretrained(options.model_dir("vae"))
    metrics = evaluate_reconstruction(vae, options) if options.evaluate else {}
    trainer.log(f"done: scaling_factor={vae.config.scaling_factor:.4f} reconstruction {metrics}")
    trainer.write_progress({"scaling_factor": vae.config.scaling_factor, "reconstruction": metrics})


@torch.no_grad()
def latent_scaling_factor(vae: Any, options: RunOptions, n: int = 512) -> float:
    """1 / std of the latents, so that scaled latents have unit variance (as SD's 0.18215)."""
    batch = make_batch(step_seed(options.seed, "vae-scale", 0), n)
    latents = vae.encode(images_to_tensor(batch.images, options.device)).latent_dist.mean
    return float(1.0 / latents.float().std())


@torch.no_grad()
def evaluate_reconstruction(vae: Any, options: RunOptions, n: int = 500) -> dict[str, float]:
    """Analyser accuracy on VAE reconstructions of held-out-style scenes."""
    from easel.zoo.shapes.analyse import ATTRIBUTES, analyse, score

    n = min(n, 40) if options.tiny else n
    batch = make_batch(
        step_seed(options.seed, "vae-eval", 0), n, config=SceneConfig(held_out="allow")
    )
    x = images_to_tensor(batch.images, options.device)
    recon = vae.decode(vae.encode(x).latent_dist.mean).sample
    results = [
        score(a, s) for a, s in zip(analyse(tensor_to_images(recon)), batch.scenes, strict=True)
    ]
    metrics = {k: float(np.mean([r[k] for r in results])) for k in (*ATTRIBUTES, "all")}
    metrics["l1"] = float(F.l1_loss(recon, x))
    return {k: round(v, 4) for k, v in metrics.items()}
