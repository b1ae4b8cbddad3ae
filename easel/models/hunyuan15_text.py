"""HunyuanVideo 1.5's text conditioning, as HunyuanVideo15Pipeline makes it (`encode_prompt`):

- Qwen2.5-VL's hidden states two layers before the last (`hidden_states[-3]`) of the prompt in
  the pipeline's chat template (system message, user turn, generation prompt; an empty prompt
  is a single space, as the pipeline's `format_text_input` makes it), the template's tokens
  before the prompt dropped (108 with Qwen's tokenizer), at most 1000 tokens kept: the
  embeddings;
- byT5's last hidden states of the quoted text in the prompt ("..." or “...”, each once, as
  `Text "a". Text "b". `; diffusers' own `extract_glyph_texts`), at most 256 tokens: the glyph
  embeddings, empty when the prompt quotes nothing (the pipeline's all-masked zeros).

The pipeline pads both to their maximum length and masks the padding out; Easel hands the
transformer the real tokens only (its joint attention gives padding no weight), so a side's
sequence has its own length and the two guidance sides are separate calls.

As in ComfyUI, prompt weights have no meaning here: the text is the literal prompt. byT5 is
read with transformers' plain ByT5Tokenizer: Glyph-SDXL-v2's added color and font tokens
(`<color-0>`, `<en-font-0>`) are spelled out as bytes, not recognised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.hunyuan15 import (
    BYT5_MAX_TOKENS,
    MAX_TOKENS,
    PROMPT_TEMPLATE,
    QWEN_LAYER,
)


def glyph_text(text: str) -> str | None:
    """The byT5 text of a prompt (its quoted parts), or None when it quotes nothing."""
    from diffusers.pipelines.hunyuan_video1_5.pipeline_hunyuan_video1_5 import (
        extract_glyph_texts,
    )

    found = extract_glyph_texts(text)
    return str(found) if found else None


def _device(model: Any) -> Any:
    return next(model.parameters()).device


def qwen_embeds(clip: Any, part: Any, text: str) -> Any:
    """Qwen2.5-VL's embeddings [1, T, D] (float32, CPU) of `text` in the pipeline's template."""
    import torch

    from easel.models.qwen_text import template_tokens

    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    drop = template_tokens(tokenizer, PROMPT_TEMPLATE)
    inputs = tokenizer(
        [PROMPT_TEMPLATE.format(text or " ")],
        max_length=MAX_TOKENS + drop,
        truncation=True,
        return_tensors="pt",
    )
    device = _device(part.model)
    with torch.inference_mode():
        out = part.model(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            output_hidden_states=True,
        )
    return out.hidden_states[QWEN_LAYER][:, drop:].float().cpu()


def byt5_embeds(clip: Any, part: Any, text: str) -> Any:
    """byT5's glyph embeddings [1, L, D] (float32, CPU) of the prompt's quoted text; L = 0 when
    it quotes nothing."""
    import torch

    model = part.model
    glyphs = glyph_text(text)
    if glyphs is None:
        return torch.zeros(1, 0, int(model.config.d_model))
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(model)
    tokens = part.tokenizer(
        glyphs, max_length=BYT5_MAX_TOKENS, truncation=True, return_tensors="pt"
    )
    device = _device(model)
    with torch.inference_mode():
        hidden = model(
            input_ids=tokens["input_ids"].to(device),
            attention_mask=tokens["attention_mask"].to(device).float(),
        )[0]
    return hidden.float().cpu()


def byt5_part(clip: Any) -> Any:
    """The byT5 part of a CLIP, or a ValueError naming what it takes."""
    for part in clip.parts:
        if part.key == "byt5":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) has no byT5 encoder: HunyuanVideo 1.5 takes Qwen2.5-VL and "
        "byT5 (DualTextEncoderLoader type hunyuan_video_15)"
    )


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen" part's text
    gives the embeddings, the "byt5" part's quoted text the glyph embeddings."""
    from easel.models.qwen_text import qwen_part
    from easel.models.text import Encoded

    qwen, byt5 = qwen_part(clip), byt5_part(clip)
    embeds = qwen_embeds(clip, qwen, texts.get(qwen.key, ""))
    glyphs = byt5_embeds(clip, byt5, texts.get(byt5.key, ""))
    manager = clip.manager
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model for part in clip.parts])
    return Encoded({"embeds": embeds, "byt5_embeds": glyphs})
