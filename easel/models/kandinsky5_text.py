"""Kandinsky 5 (image)'s text conditioning, as Kandinsky5T2IPipeline makes it (`encode_prompt`):

- the prompt cleaned as the pipeline cleans it (HTML entities, runs of white space; diffusers'
  own `prompt_clean`, which also applies ftfy when it is installed);
- Qwen2.5-VL's last hidden states of the prompt in the pipeline's chat template, the template's
  first tokens (system prompt and "<|im_start|>user\\n") dropped, at most 512 prompt tokens;
  these are the embeddings (no padding: the transformer sees the prompt's own length);
- CLIP-L's pooled output (77 tokens, easel.models.text) as the pooled embedding.

As in ComfyUI, prompt weights have no meaning for the Qwen part: its text is the literal prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from easel.models.families.kandinsky5 import MAX_TOKENS, PROMPT_TEMPLATE


def clean(text: str) -> str:
    """The pipeline's prompt cleaning (diffusers' prompt_clean)."""
    from diffusers.pipelines.kandinsky5.pipeline_kandinsky_t2i import prompt_clean

    return str(prompt_clean(text))


def qwen_embeds(clip: Any, part: Any, text: str) -> Any:
    """Qwen2.5-VL's embeddings [1, T, D] (float32, CPU) of `text` in the pipeline's template."""
    from easel.models.qwen_text import _hidden_states, template_tokens

    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    drop = template_tokens(tokenizer, PROMPT_TEMPLATE)
    inputs = dict(
        tokenizer(
            [PROMPT_TEMPLATE.format(text)],
            max_length=MAX_TOKENS + drop,
            truncation=True,
            return_tensors="pt",
        )
    )
    hidden = _hidden_states(part, inputs)
    return hidden[:, drop:].float().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen" part's text
    gives the embeddings, the "l" part's (CLIP-L) the pooled embedding."""
    from easel.models.qwen_text import qwen_part
    from easel.models.text import Encoded
    from easel.models.text import encode_prompts as encode_clip

    qwen = qwen_part(clip)
    clip_parts = tuple(p for p in clip.parts if p.key == "l")
    if not clip_parts:
        raise ValueError(
            f"this CLIP ({clip.name}) has no CLIP-L: Kandinsky 5 takes Qwen2.5-VL and CLIP-L "
            "(DualTextEncoderLoader type kandinsky5_image)"
        )
    restricted = replace(clip, parts=clip_parts, family=None, empty_cache=clip.empty_cache)
    pooled = encode_clip(restricted, {"l": clean(texts.get("l", ""))})
    embeds = qwen_embeds(clip, qwen, clean(texts.get(qwen.key, "")))
    manager = clip.manager
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model for part in clip.parts])
    return Encoded(
        {"embeds": embeds, "pooled": pooled.conditioning["pooled"]}, list(pooled.warnings)
    )
