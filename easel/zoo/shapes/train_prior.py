"""Stage `prior`: trains a PriorTransformer mapping CLIP text to CLIP image embeddings (unCLIP)."""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F

from easel.zoo.shapes.components import load_clip
from easel.zoo.shapes.configs import prior_scheduler_config
from easel.zoo.shapes.data import make_batch, step_seed
from easel.zoo.shapes.train_clip import clip_embeddings, image_embeddings
from easel.zoo.shapes.training import RunOptions, StageTrainer, add_noise, autocast, torch_generator

EMPTY_CAPTION_PROB = 0.1


def prior_scheduler() -> Any:
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(prior_scheduler_config())


@torch.no_grad()
def embedding_stats(
    clip: Any, options: RunOptions, n: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of CLIP image embeddings over training images (the prior's normalisation)."""
    batch = make_batch(step_seed(options.seed, "prior-stats", 0), 64 if options.tiny else n)
    emb = image_embeddings(clip, batch.images, options.device)
    return emb.mean(0, keepdim=True), emb.std(0, keepdim=True).clamp(min=1e-3)


def train_prior(options: RunOptions) -> None:
    from diffusers import PriorTransformer

    device = options.device
    clip, tokenizer = load_clip(options.work_dir, device)
    scheduler = prior_scheduler()
    torch.manual_seed(options.seed)
    prior = cast(Any, PriorTransformer)(**options.family.prior_kwargs()).to(device)
    mean, std = embedding_stats(clip, options)
    with torch.no_grad():
        prior.clip_mean.copy_(mean)
        prior.clip_std.copy_(std)
    prior.clip_mean.requires_grad_(False)
    prior.clip_std.requires_grad_(False)
    params = [p for p in prior.parameters() if p.requires_grad]
    budget = options.budget("prior")
    trainer = StageTrainer("prior", options, {"prior": prior}, params, budget, use_ema=True)

    def step_fn(step: int) -> dict[str, float]:
        batch = make_batch(step_seed(options.seed, "prior", step), budget.batch_size)
        gen = torch_generator(options.seed, "prior", step, device)
        drop = torch.rand(budget.batch_size, generator=gen, device=device) < EMPTY_CAPTION_PROB
        captions = ["" if d else c for c, d in zip(batch.captions, drop.tolist(), strict=True)]
        with torch.no_grad():
            text = clip_embeddings(clip, tokenizer, captions, device)
            target = (image_embeddings(clip, batch.images, device) - mean) / std
        noisy, _, timesteps = add_noise(scheduler, target, gen)
        with autocast(device):
            pred = prior(
                noisy,
                timesteps,
                proj_embedding=text["text_embeds"],
                encoder_hidden_states=text["hidden"],
                attention_mask=text["mask"].bool(),
            ).predicted_image_embedding
        loss = F.mse_loss(pred.float(), target)
        loss.backward()
        return {"loss": float(loss.detach())}

    trainer.run(step_fn)
    from easel.zoo.shapes.train_unet import save_ema_model

    save_ema_model(trainer, prior, options.model_dir("prior"))
    scheduler.save_pretrained(options.stage_dir("prior") / "scheduler")
    prior = PriorTransformer.from_pretrained(options.model_dir("prior")).to(device).eval()
    metrics = evaluate_prior(prior, clip, tokenizer, options) if options.evaluate else {}
    trainer.log(f"done: {metrics}")
    trainer.write_progress({"eval": metrics})


@torch.no_grad()
def evaluate_prior(
    prior: Any, clip: Any, tokenizer: Any, options: RunOptions, n: int = 200
) -> dict[str, float]:
    """Cosine between sampled embeddings and the true image's embedding, and caption retrieval.

    retrieval: fraction of held-out prompts whose sampled embedding is closest to a rendered
    image of its own caption among the images of all n prompts.
    """
    from easel.zoo.shapes.evaluate import eval_scenes
    from easel.zoo.shapes.unclip import sample_prior

    n = 8 if options.tiny else n
    device = options.device
    scenes = eval_scenes(n, options.seed)
    from easel.zoo.shapes.data import render

    images = render(scenes, 32, jitter=False)
    truth = image_embeddings(clip, images, device)
    text = clip_embeddings(clip, tokenizer, [s.caption for s in scenes], device)
    uncond = clip_embeddings(clip, tokenizer, [""], device)
    gen = torch.Generator("cpu").manual_seed(options.seed)
    sampled = sample_prior(prior, prior_scheduler(), text, uncond, generator=gen)
    cos = F.cosine_similarity(sampled, truth, dim=-1)
    sims = F.normalize(sampled, dim=-1) @ F.normalize(truth, dim=-1).T
    captions = [s.caption for s in scenes]
    retrieval = sum(captions[j] == captions[i] for i, j in enumerate(sims.argmax(1).tolist())) / n
    text_cos = F.cosine_similarity(text["text_embeds"], truth, dim=-1)
    return {
        "cosine_to_truth": round(float(cos.mean()), 4),
        "retrieval_top1": round(float(retrieval), 4),
        "text_embed_cosine_to_truth": round(float(text_cos.mean()), 4),
        "n": n,
    }
