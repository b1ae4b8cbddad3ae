"""Text conditioning for Krea 2: hidden states tapped from 12 layers of Qwen3-VL's language model
(`hidden_states[2, 5, ..., 35]`, 0 being the embeddings) over the prompt in Qwen-Image's chat
template, the template's system part and "<|im_start|>user\\n" dropped, as Krea2Pipeline and
ComfyUI's Krea 2 encoder make them.

- Krea2Pipeline pads the prompt in the middle of the template (`[prefix | prompt | PAD |
  suffix]`), masks the padding out and counts positions over real tokens only; the transformer
  never reads the padding (key mask; only image tokens are returned). Easel never pads, as
  ComfyUI: the same numbers for every real token (the encoder is causal).
- The conditioning's `embeds` are [1, T, 12 * D] (the taps side by side per token, as ComfyUI
  carries them); the Krea 2 network adapter unfolds them to [1, T, 12, D].
- The prompt is taken literally, as ComfyUI's Qwen3-VL tokenizer takes it
  (`disable_weights`); at most 512 tokens with the template's suffix (Krea2Pipeline's
  max_sequence_length), the rest cut off with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.krea2 import MAX_TOKENS, PROMPT_PREFIX, PROMPT_SUFFIX, TAP_LAYERS


def token_ids(tokenizer: Any, text: str, warnings: list[str]) -> tuple[list[int], int]:
    """(ids, how many leading template ids to drop): the prefix and prompt tokenised together
    (as Krea2Pipeline does), then the suffix."""
    drop = len(tokenizer(PROMPT_PREFIX).input_ids)
    body = [int(i) for i in tokenizer(PROMPT_PREFIX + text).input_ids]
    suffix = [int(i) for i in tokenizer(PROMPT_SUFFIX).input_ids]
    limit = drop + MAX_TOKENS - len(suffix)
    if len(body) > limit:
        message = f"the prompt has more than {MAX_TOKENS} tokens: the rest is cut off"
        if message not in warnings:
            warnings.append(message)
        body = body[:limit]
    return body + suffix, drop


def tapped_states(clip: Any, part: Any, ids: list[int]) -> Any:
    """The tapped hidden states [1, T, 12, D], float32 on the CPU."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            output_hidden_states=True,
        )
    states = out.hidden_states
    if len(states) <= max(TAP_LAYERS):
        raise ValueError(
            f"the text encoder gives {len(states)} hidden states; Krea 2 reads "
            f"{list(TAP_LAYERS)} (Qwen3-VL-4B's)"
        )
    return torch.stack([states[i] for i in TAP_LAYERS], dim=2).float().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a Krea 2 CLIP: `embeds` [1, T, 12 * D] and `attention_mask` [1, T].
    The text encoder is offloaded afterwards when the manager's policy says so."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    ids, drop = token_ids(part.tokenizer, texts.get(part.key, ""), warnings)
    states = tapped_states(clip, part, ids)[:, drop:]
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    batch, length, layers, width = states.shape
    embeds = states.reshape(batch, length, layers * width)
    mask = torch.ones(1, length, dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, warnings)
