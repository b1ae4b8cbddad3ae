"""Flux.2 nodes (ComfyUI's names): EmptyFlux2LatentImage (an empty latent in the Flux.2 latent
space: 128 channels at 1/16 of the image), Flux2Scheduler (Flux.2's noise levels for a size and
step count, for SamplerCustomAdvanced), FluxKVCache (reference images run once) and
FluxKontextMultiReferenceLatentMethod (how several ReferenceLatent images are placed). The text
encoder loads with TextEncoderLoader type flux2."""

from __future__ import annotations

import math
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, Latent, Model, socket_type
from easel.models.families.flux2 import FLUX2_LATENT, compute_empirical_mu

Sigmas = socket_type("SIGMAS")
MAX_RESOLUTION = 16384
PIXELS_PER_TOKEN = FLUX2_LATENT.factor * FLUX2_LATENT.factor  # one token per 16x16 pixels
# ComfyUI's FluxKontextMultiReferenceLatentMethod choices; Easel's Flux.2 adapter places
# references by index (Flux.2's own way; see easel.models.flux2_denoiser).
REFERENCE_METHODS = ["offset", "index", "uxo/uno", "index_timestep_zero"]


@node(category="latent", outputs={"latent": Latent})
def EmptyFlux2LatentImage(
    ctx: Context,
    width: int = Input(1024, ge=16, le=MAX_RESOLUTION, step=16),
    height: int = Input(1024, ge=16, le=MAX_RESOLUTION, step=16),
    batch_size: int = Input(1, ge=1, le=64),
) -> Any:
    """A blank Flux.2 latent (ComfyUI's EmptyFlux2LatentImage): [batch, 128, height / 16,
    width / 16], the Flux.2 VAE's 32 channels patchified 2x2. A size that is not a multiple
    of 16 (one linked from ImageSize) is rounded down, as ComfyUI does, with a warning; the
    sampler gives the latent its model's channels."""
    import torch

    from easel.core.budget import budget_of

    problem = budget_of(ctx.services).problem(width, height, batch=batch_size)
    if problem:
        raise NodeError(problem, "batch_size" if batch_size > 1 else "width")
    factor = FLUX2_LATENT.factor
    new_w, new_h = width - width % factor, height - height % factor
    if (new_w, new_h) != (width, height):
        ctx.warn(
            f"{width}x{height} is not a multiple of Flux.2's latent factor {factor}: the "
            f"latent is {new_w}x{new_h}"
        )
    samples = torch.zeros(batch_size, FLUX2_LATENT.channels, new_h // factor, new_w // factor)
    return {"latent": {"samples": samples, "width": new_w, "height": new_h}}


def flux2_sigmas(steps: int, width: int, height: int) -> Any:
    """Flux.2's schedule (Black Forest Labs' get_schedule, as ComfyUI's Flux2Scheduler and
    Flux2Pipeline make it): steps + 1 levels from 1 to 0, time-shifted by the empirical mu of
    the image's token count (one token per 16x16 pixels) and step count."""
    import torch

    mu = compute_empirical_mu(round(width * height / PIXELS_PER_TOKEN), steps)
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    shifted = math.exp(mu) / (math.exp(mu) + (1 / t - 1))  # 1/0 -> inf -> 0 at the end
    return shifted.to(torch.float32)


@node(category="sampling/custom_sampling/schedulers", outputs={"sigmas": Sigmas})
def Flux2Scheduler(
    steps: int = Input(20, ge=1, le=4096),
    width: int = Input(1024, ge=16, le=MAX_RESOLUTION),
    height: int = Input(1024, ge=16, le=MAX_RESOLUTION),
) -> Any:
    """Flux.2's noise levels for `steps` steps at `width` x `height` (ComfyUI's Flux2Scheduler):
    a linear schedule shifted by an exponent that grows with the image's size and shrinks with
    the step count, as Flux2Pipeline computes it. For SamplerCustomAdvanced."""
    return {"sigmas": flux2_sigmas(steps, width, height)}


@node(category="advanced/model", outputs={"model": Model})
def FluxKVCache(model: Model) -> Any:
    """Run a Flux.2 model's reference images (ReferenceLatent) once, at timestep 0, and reuse
    their attention keys and values at every later step (ComfyUI's FluxKVCache, for Flux.2
    Klein KV models; diffusers' Flux2KleinKVPipeline). References attend only to each other."""
    from dataclasses import replace

    family = model.family
    if getattr(family, "network", None) != "flux2":
        label = getattr(family, "label", "this model")
        raise NodeError(
            f"FluxKVCache caches Flux.2 reference images; {model.name} is {label}", "model"
        )
    return {"model": replace(model, family=replace(family, kv_cache=True))}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def FluxKontextMultiReferenceLatentMethod(
    conditioning: Conditioning,
    reference_latents_method: str = Input("offset", choices=REFERENCE_METHODS),
) -> Any:
    """How the reference images of this conditioning (ReferenceLatent) are placed: ComfyUI's
    names. Flux.2 places them by `index` (the default of its pipelines); Flux.1 Kontext beside
    each other (`offset`). A method a model cannot follow is reported when sampling."""
    return {"conditioning": {**conditioning, "reference_latents_method": reference_latents_method}}


NODES = [EmptyFlux2LatentImage, Flux2Scheduler, FluxKVCache, FluxKontextMultiReferenceLatentMethod]
