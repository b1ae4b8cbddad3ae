"""Prompt adherence of generated images, judged by the pixel analyser (and the tiny CLIP)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from easel.zoo.shapes.analyse import ATTRIBUTES, analyse, score
from easel.zoo.shapes.data import Scene, SceneConfig, make_batch

EVAL_SEED_OFFSET = 10_000


def eval_scenes(
    n: int, seed: int, held_out: str = "only", two_object_prob: float = 0.0
) -> list[Scene]:
    """n fully described prompts: held_out="only" draws from the held-out list."""
    config = SceneConfig(
        two_object_prob=two_object_prob,
        drop_size_prob=0.0,
        drop_position_prob=0.0,
        drop_background_prob=0.0,
        held_out=held_out,
    )
    return make_batch(seed + EVAL_SEED_OFFSET, n, config=config).scenes


def adherence(images: np.ndarray, scenes: list[Scene]) -> dict[str, float]:
    """Fraction of images showing each attribute their prompt asked for."""
    results = [score(a, s) for a, s in zip(analyse(images), scenes, strict=True)]
    metrics = {f"{k}_accuracy": float(np.mean([r[k] for r in results])) for k in ATTRIBUTES}
    metrics["all_accuracy"] = float(np.mean([r["all"] for r in results]))
    metrics["n"] = len(scenes)
    return metrics


@torch.no_grad()
def clip_score(clip: Any, tokenizer: Any, images: np.ndarray, captions: list[str]) -> float:
    """Mean CLIPScore = 100 * max(cos(image, text), 0) with the tiny CLIP."""
    from easel.zoo.shapes.train_clip import image_embeddings, tokenize

    device = clip.device
    img = image_embeddings(clip, images, str(device))
    inputs = tokenize(tokenizer, captions, str(device))
    out = clip.text_model(**inputs)
    txt = clip.text_projection(out.pooler_output)
    cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
    return float((100 * cos.clamp(min=0)).mean())


@torch.no_grad()
def generate(
    pipe: Any, captions: list[str], seed: int, steps: int, guidance: float, chunk: int = 50
) -> np.ndarray:
    """uint8 images (N x 32 x 32 x 3) for captions, in chunks seeded by their offset."""
    images = []
    for start in range(0, len(captions), chunk):
        gen = torch.Generator("cpu").manual_seed(seed + start)
        out = pipe(
            captions[start : start + chunk],
            height=32,
            width=32,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=gen,
            output_type="np",
        )
        images.append(np.clip(np.rint(out.images * 255), 0, 255).astype(np.uint8))
    return np.concatenate(images)


@torch.no_grad()
def evaluate_pipeline(
    pipe: Any,
    clip: Any,
    tokenizer: Any,
    n: int = 100,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 3.0,
    held_out: str = "only",
    with_fid: bool = False,
    two_object_prob: float = 0.0,
) -> dict[str, Any]:
    """Generate n prompts (held-out, single-object by default) with `pipe` and score them."""
    from easel.zoo.shapes.fid import clip_fid

    scenes = eval_scenes(n, seed, held_out, two_object_prob)
    captions = [s.caption for s in scenes]
    images = generate(pipe, captions, seed, steps, guidance)
    metrics: dict[str, Any] = adherence(images, scenes)
    metrics["clip_score"] = clip_score(clip, tokenizer, images, captions)
    if with_fid:
        metrics.update(clip_fid(clip, images, scenes, seed))
    metrics.update(
        steps=steps, guidance=guidance, held_out=held_out, two_object_prob=two_object_prob
    )
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


@torch.no_grad()
def evaluate_text_to_image(
    vae: Any, clip: Any, tokenizer: Any, unet: Any, sampler: str = "euler", **options: Any
) -> dict[str, Any]:
    """`evaluate_pipeline` on a pipeline of the trained stages (options: n, seed, guidance...)."""
    from easel.zoo.shapes.components import text_to_image_pipeline

    pipe = text_to_image_pipeline(vae, clip, tokenizer, unet, sampler)
    return {**evaluate_pipeline(pipe, clip, tokenizer, **options), "sampler": sampler}
