"""unCLIP prior sampling (DALL-E 2, Ramesh et al. 2022, section 2.1): text embedding ->
CLIP image embedding through a diffusers PriorTransformer, best of N candidates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def make_prior_scheduler(handle: Any) -> Any:
    import diffusers

    cls = getattr(diffusers, handle.scheduler_class)
    config = {k: v for k, v in handle.scheduler_config.items() if not k.startswith("_")}
    return cls.from_config(config)


def _text_inputs(
    cond: dict[str, Any], num_embeddings: int, device: Any, dtype: Any
) -> tuple[Any, Any, Any]:
    """(projected text embedding [1, D], hidden states [1, seq, D], mask [1, seq])."""
    import torch

    pooled, hidden = cond.get("pooled"), cond.get("embeds")
    if pooled is None or hidden is None:
        raise ValueError(
            "the conditioning lacks the pooled text embedding a prior needs; "
            "encode the prompt with the prior's CLIP"
        )
    mask = cond.get("attention_mask")
    if mask is None:
        mask = torch.ones(hidden.shape[:2], dtype=torch.bool)
    hidden, mask = hidden[:, :num_embeddings], mask[:, :num_embeddings]
    return (pooled[:1].to(device, dtype), hidden[:1].to(device, dtype), mask[:1].to(device).bool())


def sample_prior(
    handle: Any,
    positive: dict[str, Any],
    negative: dict[str, Any] | None,
    *,
    seed: int,
    steps: int,
    guidance: float,
    candidates: int,
    callback: Callable[[int, int], None] | None = None,
) -> tuple[Any, Any]:
    """(best image embedding [1, D], candidate scores [N]). Each candidate is sampled with
    classifier-free guidance against `negative`, else the empty prompt carried in
    `positive["uncond"]`, else the zero text embedding; the kept one has
    the highest dot product of unit-normalised embeddings with the text embedding."""
    import torch

    prior = handle.manager.place(handle.prior)
    param = next(prior.parameters())
    device, dtype = param.device, param.dtype
    config = prior.config
    seq = int(config.num_embeddings)
    text, hidden, mask = _text_inputs(positive, seq, device, dtype)
    if hidden.shape[1] != seq:
        raise ValueError(
            f"the prior expects {seq} text tokens, the conditioning has {hidden.shape[1]}"
        )
    guided = guidance > 1.0
    if negative is None:
        # unCLIP priors learn their unconditional branch from empty captions: contrast with
        # the empty prompt TextEncode attaches; zeros only when there is none.
        negative = positive.get("uncond")
    if guided:
        if negative is not None and negative.get("pooled") is not None:
            u_text, u_hidden, u_mask = _text_inputs(negative, seq, device, dtype)
        else:
            u_text, u_hidden, u_mask = (
                torch.zeros_like(text),
                torch.zeros_like(hidden),
                torch.ones_like(mask),
            )
        text_in = torch.cat([u_text.expand(candidates, -1), text.expand(candidates, -1)])
        hidden_in = torch.cat(
            [u_hidden.expand(candidates, -1, -1), hidden.expand(candidates, -1, -1)]
        )
        mask_in = torch.cat([u_mask.expand(candidates, -1), mask.expand(candidates, -1)])
    else:
        text_in = text.expand(candidates, -1)
        hidden_in = hidden.expand(candidates, -1, -1)
        mask_in = mask.expand(candidates, -1)

    scheduler = make_prior_scheduler(handle)
    scheduler.set_timesteps(steps, device=device)
    timesteps = scheduler.timesteps
    generator = torch.Generator("cpu").manual_seed(seed)
    dim = int(config.embedding_dim)
    latents = torch.randn((candidates, dim), generator=generator, dtype=torch.float32)
    latents = (latents * scheduler.init_noise_sigma).to(device, dtype)
    unclip = type(scheduler).__name__ == "UnCLIPScheduler"
    with torch.inference_mode():
        for i, t in enumerate(timesteps):
            x = torch.cat([latents] * 2) if guided else latents
            pred = prior(
                x,
                timestep=t,
                proj_embedding=text_in,
                encoder_hidden_states=hidden_in,
                attention_mask=mask_in,
            ).predicted_image_embedding
            if guided:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            kwargs: dict[str, Any] = {"generator": generator}
            if unclip:
                kwargs["prev_timestep"] = timesteps[i + 1] if i + 1 < len(timesteps) else None
            latents = scheduler.step(pred, timestep=t, sample=latents, **kwargs).prev_sample
            if callback is not None:
                callback(i + 1, len(timesteps))
        embeds = prior.post_process_latents(latents).float()
    reference = torch.nn.functional.normalize(text.float(), dim=-1)
    scores = torch.nn.functional.normalize(embeds, dim=-1) @ reference[0]
    best = int(scores.argmax())
    return embeds[best : best + 1].cpu(), scores.cpu()
