"""Anima's text conditioning, as diffusers' AnimaTextEncoderStep makes it: the prompt in Qwen's
tokens (no template, no special tokens) through the Qwen3 text encoder, its last hidden states
(padding zeroed), and the same prompt's T5 token ids (ending in </s>), both cut at 512 tokens.
The LLM adapter that turns the two into the DiT's context belongs to the diffusion model file,
so the sampler's network adapter runs it (easel.models.anima_denoiser), as ComfyUI runs it in
its Anima model.

An empty prompt has no Qwen token: diffusers then encodes one masked token, whose zeroed hidden
state Easel keeps (and the adapter attends to it unmasked, where a fully masked attention would
give NaN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_TOKENS = 512  # AnimaTextEncoderStep's max_sequence_length


def anima_part(clip: Any) -> Any:
    """The Qwen3 part of an Anima CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3" and hasattr(part.tokenizer, "t5"):
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Anima's Qwen3: load qwen_3_06b_base with "
        "TextEncoderLoader type stable_diffusion"
    )


def encode(clip: Any, text: str) -> dict[str, Any]:
    """A CONDITIONING: {"embeds": Qwen3 states [1, T, D], "attention_mask": [1, T],
    "t5_ids": [1, S] (int64), "t5_mask": [1, S]}, on the CPU."""
    import torch

    part = anima_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    qwen = tokenizer.qwen(text, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    t5 = tokenizer.t5(text, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    mask = [1] * len(qwen)
    if not qwen:
        qwen, mask = [0], [0]
    model = part.model
    device = next(model.parameters()).device
    input_ids = torch.tensor([qwen], device=device)
    attention = torch.tensor([mask], device=device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    embeds = hidden * attention[..., None].to(hidden.dtype)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return {
        "embeds": embeds.float().cpu(),
        "attention_mask": attention.cpu(),
        "t5_ids": torch.tensor([t5], dtype=torch.long),
        "t5_mask": torch.ones(1, len(t5), dtype=torch.long),
    }


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen3" part's text."""
    from easel.models.text import Encoded

    part = anima_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
