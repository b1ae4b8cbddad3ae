"""Stage `decoder`: trains the unCLIP decoder, a latent UNet conditioned on CLIP image embeds."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from easel.zoo.shapes.components import latent_scheduler, load_clip, load_vae
from easel.zoo.shapes.data import make_batch, step_seed
from easel.zoo.shapes.train_clip import image_embeddings
from easel.zoo.shapes.training import (
    RunOptions,
    StageTrainer,
    add_noise,
    autocast,
    images_to_tensor,
    min_snr_weights,
    torch_generator,
)

EMPTY_EMBED_PROB = 0.1  # zero image embedding = unconditional, for guidance


def init_from_text_unet(decoder: torch.nn.Module, unet_dir: Any) -> int:
    """Start from the text UNet's weights wherever the two architectures agree.

    The denoising trunk is shared; only the conditioning projections differ, so the decoder
    learns the new conditioning instead of learning to denoise from scratch.
    """
    from diffusers import UNet2DConditionModel

    if not unet_dir.exists():
        return 0
    source = UNet2DConditionModel.from_pretrained(unet_dir).state_dict()
    target = decoder.state_dict()
    shared = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    decoder.load_state_dict(shared, strict=False)
    return len(shared)


def train_decoder(options: RunOptions) -> None:
    from diffusers import UNet2DConditionModel

    device = options.device
    vae = load_vae(options.work_dir, device)
    clip, tokenizer = load_clip(options.work_dir, device)
    scheduler = latent_scheduler()
    torch.manual_seed(options.seed)
    decoder = cast(Any, UNet2DConditionModel)(**options.family.decoder_kwargs()).to(device)
    copied = init_from_text_unet(decoder, options.model_dir("unet"))
    budget = options.budget("decoder")
    params = list(decoder.parameters())
    trainer = StageTrainer("decoder", options, {"decoder": decoder}, params, budget, use_ema=True)
    trainer.log(f"initialised {copied} tensors from the text UNet")
    scale = vae.config.scaling_factor

    def step_fn(step: int) -> dict[str, float]:
        batch = make_batch(step_seed(options.seed, "decoder", step), budget.batch_size)
        gen = torch_generator(options.seed, "decoder", step, device)
        keep = torch.rand(budget.batch_size, generator=gen, device=device) >= EMPTY_EMBED_PROB
        with torch.no_grad(), autocast(device):
            x = images_to_tensor(batch.images, device)
            latents = vae.encode(x).latent_dist.sample(generator=gen).float() * scale
            embeds = image_embeddings(clip, batch.images, device).float() * keep[:, None]
        noisy, noise, timesteps = add_noise(scheduler, latents, gen)
        with autocast(device):
            pred = decoder(
                noisy,
                timesteps,
                encoder_hidden_states=None,
                added_cond_kwargs={"image_embeds": embeds},
            ).sample
        per_sample = F.mse_loss(pred.float(), noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_sample * min_snr_weights(scheduler, timesteps)).mean()
        loss.backward()
        return {"loss": float(loss.detach())}

    trainer.run(step_fn)
    from easel.zoo.shapes.train_unet import save_ema_model

    save_ema_model(trainer, decoder, options.model_dir("decoder"))
    decoder = UNet2DConditionModel.from_pretrained(options.model_dir("decoder")).to(device).eval()
    metrics = evaluate_unclip(decoder, vae, clip, tokenizer, options) if options.evaluate else {}
    trainer.log(f"done: {metrics}")
    trainer.write_progress({"eval": metrics})


@torch.no_grad()
def evaluate_unclip(
    decoder: Any, vae: Any, clip: Any, tokenizer: Any, options: RunOptions, n: int = 100
) -> dict:
    """Held-out prompts through prior + decoder (20 Euler steps), scored by the analyser."""
    from diffusers import PriorTransformer

    from easel.zoo.shapes.components import sampling_scheduler
    from easel.zoo.shapes.evaluate import adherence, eval_scenes
    from easel.zoo.shapes.train_clip import clip_embeddings
    from easel.zoo.shapes.train_prior import prior_scheduler
    from easel.zoo.shapes.unclip import sample_decoder, sample_prior

    n = 8 if options.tiny else n
    device = options.device
    prior = PriorTransformer.from_pretrained(options.model_dir("prior")).to(device).eval()
    scenes = eval_scenes(n, options.seed)
    text = clip_embeddings(clip, tokenizer, [s.caption for s in scenes], device)
    uncond = clip_embeddings(clip, tokenizer, [""], device)
    gen = torch.Generator("cpu").manual_seed(options.seed)
    embeds = sample_prior(prior, prior_scheduler(), text, uncond, generator=gen)
    images = sample_decoder(decoder, sampling_scheduler("euler"), vae, embeds, generator=gen)
    return {
        k: round(v, 4) if isinstance(v, float) else v for k, v in adherence(images, scenes).items()
    }
