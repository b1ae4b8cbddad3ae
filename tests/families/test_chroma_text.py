"""Chroma's T5 prompts: a plain prompt's embeddings and mask equal ChromaPipeline's (512 tokens,
T5 run with its mask, the transformer's mask through the first padding token); weights move the
weighted tokens only, as ComfyUI weights them."""

from __future__ import annotations

from typing import Any

import torch

from tests.fixtures import chroma_family

chroma_root = chroma_family.chroma_root
chroma_models = chroma_family.chroma_models
chroma_manager = chroma_family.chroma_manager


def _clip(files: dict[str, Any], manager: Any) -> Any:
    from easel.models.chroma_loading import chroma_clip

    return chroma_clip("t5", [files["t5"]], manager)


def test_a_plain_prompt_equals_the_pipelines_embeddings(
    chroma_models: Any, chroma_manager: Any
) -> None:
    from easel.models.text import encode_prompts

    pipe, files = chroma_models
    ours = encode_prompts(_clip(files, chroma_manager), {"t5": "a red circle"}).conditioning
    embeds, mask = pipe._get_t5_prompt_embeds("a red circle", max_sequence_length=512)
    assert ours["embeds"].shape == embeds.shape == (1, 512, 32)
    assert (ours["embeds"] - embeds).abs().max().item() <= 1e-5
    assert torch.equal(ours["attention_mask"].float(), mask)


def test_weights_move_only_the_weighted_tokens(chroma_models: Any, chroma_manager: Any) -> None:
    from easel.models.text import encode_prompts

    _, files = chroma_models
    clip = _clip(files, chroma_manager)
    plain = encode_prompts(clip, {"t5": "a red circle"}).conditioning["embeds"]
    weighted = encode_prompts(clip, {"t5": "a (red:1.5) circle"}).conditioning["embeds"]
    moved = (plain - weighted).abs().amax(dim=-1)[0]
    count = len(clip.parts[0].tokenizer("a red circle", add_special_tokens=False).input_ids)
    assert bool((moved[:count] > 0).any())
    assert float(moved[count:].max()) == 0.0
