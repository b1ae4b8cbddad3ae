"""PriorSample: the DALL-E 2 / unCLIP prior, from a text conditioning to image embeddings."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Conditioning, ImageEmbeds, Prior
from easel.nodes.primitives import MAX_SEED


@node(
    category="sampling",
    outputs={"positive": Conditioning, "negative": Conditioning, "image_embeds": ImageEmbeds},
)
def PriorSample(
    ctx: Context,
    prior: Prior,
    positive: Conditioning,
    negative: Conditioning | None = None,
    seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed"),
    steps: int = Input(25, ge=1, le=1000),
    guidance: float = Input(4.0, ge=0.0, le=50.0, step=0.1),
    candidates: int = Input(2, ge=1, le=64),
) -> dict[str, Any]:
    """Sample `candidates` CLIP image embeddings for the prompt and keep the one closest to
    the text embedding. Guidance contrasts the prompt with `negative`, else with the empty
    prompt (as unCLIP priors are trained). `positive`/`negative` condition a decoder model in
    a KSampler (negative: the prior's embedding of the negative prompt, else zeros)."""
    import torch

    from easel.models.prior import sample_prior

    def report(step: int, total: int) -> None:
        ctx.progress(step, total)

    try:
        best, scores = sample_prior(
            prior,
            positive,
            negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            candidates=candidates,
            callback=report,
        )
        if negative is not None and negative.get("pooled") is not None:
            neg_embeds, _ = sample_prior(
                prior, negative, None, seed=seed, steps=steps, guidance=guidance, candidates=1
            )
        else:
            neg_embeds = torch.zeros_like(best)
    except ValueError as exc:
        raise NodeError(str(exc), "positive") from exc
    ctx.logger.info("prior candidate scores: %s", [round(float(s), 4) for s in scores])
    carried = ("embeds", "attention_mask")
    pos = {"image_embeds": best, **{k: positive[k] for k in carried if k in positive}}
    neg_source = negative if negative is not None else positive.get("uncond") or {}
    neg = {"image_embeds": neg_embeds, **{k: neg_source[k] for k in carried if k in neg_source}}
    return {"positive": pos, "negative": neg, "image_embeds": best}


NODES = [PriorSample]
