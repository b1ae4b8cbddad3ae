"""Boogu-Image's text conditioning, as ComfyUI's BooguTokenizer / BooguQwen3VLClipModel and
Boogu's pipeline make it: the prompt in Boogu's chat template (easel.models.families.boogu
`prompt_text`: a system turn, the user turn, no generation prompt and no <think> block) through
Qwen3-VL; the last hidden state (final norm applied) of every token is the conditioning.

- Images (TextEncodeBooguEdit's, already scaled to Qwen3-VL's size): one vision block each
  before the prompt, seen by the vision tower through transformers' Qwen3VLProcessor (as
  easel.models.qwen21_text sends them); their tokens stay in the conditioning.
- A prompt is taken literally (ComfyUI's Qwen3-VL tokenizer disables weights): `(word:1.2)`
  and `embedding:` have no special meaning here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from easel.models.families.boogu import QWEN3VL_8B, prompt_text


def boogu_part(clip: Any) -> Any:
    """The Qwen3-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "key", "") == QWEN3VL_8B.key and getattr(part, "kind", "") == "qwen3vl":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen3-VL: load Boogu's text encoder (qwen3vl_8b) with "
        "TextEncoderLoader type boogu"
    )


def encode(clip: Any, text: str, images: Sequence[Any] = ()) -> Any:
    """A CONDITIONING ({"embeds": [1, T, D] float32 on the CPU}) for `text`, with `images`
    (RGB PIL images) seen by the vision tower."""
    import torch

    from easel.models.text import Encoded

    part = boogu_part(clip)
    model, tokenizer = part.model, part.tokenizer
    if images and not hasattr(getattr(model, "model", None), "visual"):
        raise ValueError(
            "this Qwen3-VL file has no vision tower (visual.*): the images to edit need "
            "ComfyUI's full qwen3vl_8b file"
        )
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(model)
    prompt = prompt_text(text, len(images))
    if images:
        from easel.models.qwen21_text import processor

        inputs = dict(processor(tokenizer)(text=[prompt], images=list(images), return_tensors="pt"))
    else:
        inputs = dict(tokenizer([prompt], add_special_tokens=False, return_tensors="pt"))
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in inputs.items() if hasattr(v, "to")}
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = kwargs["pixel_values"].to(next(model.parameters()).dtype)
    with torch.inference_mode():
        out = clip.forward(part)(**kwargs, output_hidden_states=True)
    embeds = out.hidden_states[-1].float().cpu()  # transformers 5: the final norm's output
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return Encoded({"embeds": embeds, "pooled": None}, [])


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """TextEncode's entry point (easel.models.text.encode_prompts): a prompt without images."""
    part = boogu_part(clip)
    return encode(clip, texts.get(part.key, ""))
