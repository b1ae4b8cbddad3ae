"""OmniGen2's text conditioning: the prompt in OmniGen2's chat template (a system turn, the
user's turn, no generation prompt) through Qwen2.5-VL-3B's language model, its last hidden
state (final norm applied) over every token of the template, as OmniGen2's pipeline and
ComfyUI's Omnigen2Tokenizer / Qwen25_3BModel make it.

The prompt is read with ComfyUI's prompt syntax (escapes, `(text:1.2)`), as ComfyUI's
tokenizer reads it, but Easel does not weight a language model's hidden states: the text is
encoded unweighted, with a warning (`embedding:` names are left out, with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.omnigen2 import QWEN25_3B, TEMPLATE

MAX_TOKENS = 4096  # far beyond any prompt; Qwen2.5-VL reads 128k positions


def omnigen2_part(clip: Any) -> Any:
    """The Qwen2.5-VL-3B part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == QWEN25_3B.key:
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not OmniGen2's Qwen2.5-VL-3B: load one with "
        "TextEncoderLoader type omnigen2"
    )


def token_ids(tokenizer: Any, text: str, warnings: list[str]) -> list[int]:
    """The template's and prompt's token ids (Qwen's tokenizer adds no special tokens)."""
    ids = [int(i) for i in tokenizer(TEMPLATE.format(text)).input_ids]
    if len(ids) > MAX_TOKENS:
        warnings.append(f"the prompt has {len(ids)} tokens, more than {MAX_TOKENS}: cut off")
        ids = ids[:MAX_TOKENS]
    return ids


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for an OmniGen2 CLIP: `embeds` [1, T, D] (float32, CPU) and its
    `attention_mask` [1, T] (all tokens). The text encoder is offloaded afterwards when the
    manager's policy says so."""
    import torch

    from easel.models.lumina_text import plain_text
    from easel.models.text import Encoded

    part = omnigen2_part(clip)
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    text = plain_text(texts.get(part.key, ""), warnings)
    ids = token_ids(part.tokenizer, text, warnings)
    device = next(part.model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            output_hidden_states=True,
        )
    embeds = out.hidden_states[-1].float().cpu()
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, warnings)
