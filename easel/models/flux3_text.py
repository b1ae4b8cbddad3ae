"""Text conditioning for Flux 3, as diffusers' Flux3TextEncoderStep encodes a prompt: the
prompt in Qwen3-VL's chat format (one user turn, then the assistant's opening), right-padded
with the tokenizer's pad token to a multiple of 80 tokens (at most 8192) with an attention mask,
through Qwen3-VL; the hidden states of layers 4, 8, ..., 32 stacked per token into one
embedding [1, T, 8 * width]. The transformer sees the padding too (no text mask), so the window
size is part of the recipe.

- The chat format is the literal text Qwen3-VL's chat template renders for one user message
  with the generation prompt: `<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n`.
  ComfyUI's tokenizer folder carries Qwen2.5's template, so the text is written here.
- Position ids are passed explicitly, the padding's set to 1, as the pipeline does (it matches
  transformers 4.57, the model's training environment).
- A prompt is taken literally: `(word:1.2)` and `embedding:` have no special meaning here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from easel.models.families.flux3 import MAX_TEXT_TOKENS, PAD_MULTIPLE, TEXT_LAYERS

CHAT_FORMAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"


def qwen3vl_part(clip: Any) -> Any:
    """The Qwen3-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3vl":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen3-VL: load Flux 3's text encoder (qwen3vl_4b) "
        "with TextEncoderLoader type flux3"
    )


def encode_part(clip: Any, part: Any, prompt: str, warnings: list[str]) -> Any:
    """Embeddings [1, T, 8 * width] float32 on the CPU, T a multiple of 80."""
    import torch

    tokenizer, model = part.tokenizer, part.model
    text = CHAT_FORMAT.format(prompt)
    length = len(tokenizer(text, add_special_tokens=False).input_ids)
    if length > MAX_TEXT_TOKENS:
        warnings.append(
            f"the prompt is {length} tokens in Qwen3-VL's chat format, more than "
            f"{MAX_TEXT_TOKENS}: the rest is cut off"
        )
    padded = min(math.ceil(min(length, MAX_TEXT_TOKENS) / PAD_MULTIPLE) * PAD_MULTIPLE,
                 MAX_TEXT_TOKENS)  # fmt: skip
    inputs = tokenizer(
        text,
        add_special_tokens=False,
        padding="max_length",
        padding_side="right",
        truncation=True,
        max_length=padded,
        return_tensors="pt",
    )
    device = next(model.parameters()).device
    mask = inputs["attention_mask"].to(device)
    positions = torch.arange(padded, device=device)[None].masked_fill(mask == 0, 1)
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=mask,
            position_ids=positions,
            output_hidden_states=True,
            use_cache=False,
        )
    if len(out.hidden_states) <= max(TEXT_LAYERS):
        raise ValueError(
            f"the text encoder has {len(out.hidden_states) - 1} layers; Flux 3 reads layers "
            f"{', '.join(map(str, TEXT_LAYERS))}"
        )
    stacked = torch.stack([out.hidden_states[k] for k in TEXT_LAYERS], dim=1)  # [B, 8, T, D]
    b, n, t, d = stacked.shape
    return stacked.permute(0, 2, 1, 3).reshape(b, t, n * d).float().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a Flux 3 CLIP: `texts["qwen3vl"]`. The text encoder is offloaded
    afterwards when the manager's policy says so."""
    from easel.models.text import Encoded

    part = qwen3vl_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    warnings: list[str] = []
    embeds = encode_part(clip, part, texts.get(part.key, ""), warnings)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return Encoded({"embeds": embeds, "pooled": None}, warnings)
