"""Stage `clip`: trains the BPE tokenizer and a tiny contrastive CLIPModel (text + vision)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch

from easel.zoo.shapes.configs import MAX_TOKENS, NATIVE_SIZE
from easel.zoo.shapes.data import SceneConfig, all_captions, make_batch, step_seed
from easel.zoo.shapes.training import RunOptions, StageTrainer, autocast, images_to_tensor


def save_image_processor(out_dir: Any) -> None:
    """Pixel preprocessing the vision tower expects: 32x32, scaled to [-1, 1]."""
    from transformers import CLIPImageProcessorPil

    CLIPImageProcessorPil(
        size={"shortest_edge": NATIVE_SIZE},
        crop_size={"height": NATIVE_SIZE, "width": NATIVE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    ).save_pretrained(out_dir)


_TOKEN_CACHE: dict[tuple[int, str], tuple[list[int], list[int]]] = {}


def tokenize(tokenizer: Any, captions: list[str], device: str) -> dict[str, torch.Tensor]:
    """Pad to MAX_TOKENS as StableDiffusionPipeline does; captions repeat, so cache them."""
    missing = [c for c in dict.fromkeys(captions) if (id(tokenizer), c) not in _TOKEN_CACHE]
    if missing:
        enc = tokenizer(missing, padding="max_length", max_length=MAX_TOKENS, truncation=True)
        for caption, ids, mask in zip(
            missing, enc["input_ids"], enc["attention_mask"], strict=True
        ):
            _TOKEN_CACHE[(id(tokenizer), caption)] = (ids, mask)
    rows = [_TOKEN_CACHE[(id(tokenizer), c)] for c in captions]
    return {
        "input_ids": torch.tensor([r[0] for r in rows], device=device),
        "attention_mask": torch.tensor([r[1] for r in rows], device=device),
    }


def train_clip(options: RunOptions) -> None:
    from transformers import CLIPConfig, CLIPModel

    from easel.zoo.shapes.tokenizer import train_clip_tokenizer

    out_dir = options.model_dir("clip")
    tokenizer = train_clip_tokenizer(all_captions(), out_dir)
    torch.manual_seed(options.seed)
    config = CLIPConfig(
        **options.family.clip_kwargs(
            len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
        )
    )
    model: Any = cast(Any, CLIPModel)(config).to(options.device)
    budget = options.budget("clip")
    trainer = StageTrainer("clip", options, {"clip": model}, list(model.parameters()), budget)

    def step_fn(step: int) -> dict[str, float]:
        batch = make_batch(step_seed(options.seed, "clip", step), budget.batch_size)
        inputs = tokenize(tokenizer, batch.captions, options.device)
        pixels = images_to_tensor(batch.images, options.device)
        with autocast(options.device):
            out = model(**inputs, pixel_values=pixels, return_loss=True)
        out.loss.float().backward()
        return {"loss": float(out.loss.detach())}

    trainer.run(step_fn)
    model.eval()
    model.save_pretrained(out_dir)
    save_image_processor(out_dir)
    metrics = evaluate_retrieval(model, tokenizer, options) if options.evaluate else {}
    trainer.log(f"done: retrieval {metrics}")
    trainer.write_progress({"retrieval": metrics})


@torch.no_grad()
def evaluate_retrieval(
    model: Any, tokenizer: Any, options: RunOptions, n: int = 256
) -> dict[str, float]:
    """Top-1 image->caption retrieval among n held-out scenes, and position-word accuracy.

    The second figure asks, per single-object image, which of the five position captions
    (the rest of the caption kept) matches best: it checks the text tower keeps position.
    """
    from easel.zoo.shapes.data import POSITION_NAMES, caption_for

    n = min(n, 16) if options.tiny else n
    batch = make_batch(
        step_seed(options.seed, "clip-eval", 0),
        n,
        config=SceneConfig(
            held_out="only",
            two_object_prob=0.0,
            drop_size_prob=0,
            drop_position_prob=0,
            drop_background_prob=0,
        ),
    )
    pixels = images_to_tensor(batch.images, options.device)
    image_emb = model.get_image_features(pixel_values=pixels)
    image_emb = _unit(image_emb)
    text_emb = _unit(model.get_text_features(**tokenize(tokenizer, batch.captions, options.device)))
    sims = image_emb @ text_emb.T
    # Held-out scenes repeat captions, so a hit is any caption equal to the image's own.
    captions = batch.captions
    hits = [captions[j] == captions[i] for i, j in enumerate(sims.argmax(1).tolist())]
    retrieval = sum(hits) / n
    correct = 0
    for i, scene in enumerate(batch.scenes):
        obj = scene.objects[0]
        options_text = [
            caption_for((type(obj)(obj.color, obj.shape, obj.size, p),), scene.background)
            for p in POSITION_NAMES
        ]
        t = _unit(model.get_text_features(**tokenize(tokenizer, options_text, options.device)))
        correct += POSITION_NAMES[int((t @ image_emb[i]).argmax())] == obj.position
    return {
        "retrieval_top1": round(retrieval, 4),
        "position_top1": round(correct / n, 4),
        "distinct_captions": len(set(captions)),
    }


def _unit(x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = x.pooler_output
    return x / x.norm(dim=-1, keepdim=True)


def clip_embeddings(
    model: Any, tokenizer: Any, captions: list[str], device: str
) -> dict[str, torch.Tensor]:
    """Text embeds (projected pooled), last hidden states and mask for captions."""
    inputs = tokenize(tokenizer, captions, device)
    out = model.text_model(**inputs)
    embeds = model.text_projection(out.pooler_output)
    return {
        "text_embeds": embeds,
        "hidden": out.last_hidden_state,
        "mask": inputs["attention_mask"],
    }


def image_embeddings(model: Any, images: np.ndarray, device: str) -> torch.Tensor:
    """CLIP image embeds (projected, not normalised) of uint8 images."""
    out = model.vision_model(pixel_values=images_to_tensor(images, device))
    return model.visual_projection(out.pooler_output)
