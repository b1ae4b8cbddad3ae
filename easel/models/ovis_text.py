"""Ovis-Image's text conditioning, as OvisImagePipeline makes it (`_get_ovis_prompt_embeds`): the
prompt after the pipeline's system prompt in Qwen3's chat template (one user turn, thinking
off), cut at and padded to 256 tokens after the template's head; Ovis 2.5's Qwen3 run with the
attention mask, its last hidden states with the padding zeroed and the head (up to
"background") dropped. The transformer sees all 256 positions, unmasked.

ComfyUI's Ovis encoder writes the same template and pads to the same 284 tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.ovis import DROPPED_TEXT, MAX_TOKENS, TEMPLATE


def ovis_part(clip: Any) -> Any:
    """The Qwen3 part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Ovis 2.5's Qwen3: load one with TextEncoderLoader "
        "type ovis"
    )


def dropped_tokens(tokenizer: Any) -> int:
    """How many of the template's first tokens are dropped (the pipeline's
    `user_prompt_begin_id`, 28 with Qwen's tokenizer)."""
    return len(tokenizer(DROPPED_TEXT, add_special_tokens=False)["input_ids"])


def encode(clip: Any, text: str) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, 256, D] float32 on the CPU}) for `text`."""
    import torch

    part = ovis_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    drop = dropped_tokens(tokenizer)
    pad = tokenizer.pad_token_id
    if pad is None:
        raise ValueError(f"this CLIP's tokenizer ({clip.name}) has no padding token")
    ids = tokenizer(TEMPLATE.format(text), add_special_tokens=False)["input_ids"]
    length = MAX_TOKENS + drop
    ids = ids[:length]
    count = len(ids)
    model = part.model
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids + [pad] * (length - count)], device=device)
    mask = torch.tensor([[1] * count + [0] * (length - count)], device=device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    embeds = (hidden * mask[..., None].to(hidden.dtype))[:, drop:]
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return {"embeds": embeds.float().cpu()}


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen3" part's text."""
    from easel.models.text import Encoded

    part = ovis_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
