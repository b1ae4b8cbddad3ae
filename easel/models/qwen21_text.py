"""Qwen-Image 2.1's text conditioning: the prompt in QwenImage21Pipeline's chat template through
Qwen3-VL's language model; the hidden states of its last decoder layer, before the final norm
(what the transformer was trained on: the pipeline neutralises the norm with a forward hook,
since transformers 5 ties `hidden_states[-1]` to the normed output, and so does this module),
with the system message's tokens dropped.

The CONDITIONING carries `embeds` [1, T, D] and `image_pad` [1, T] (where the encoder's image
slots are; all False for a text prompt). An empty prompt is encoded as " ", as the pipeline and
ComfyUI's `prevent_empty_text` do. Reference images need Qwen3-VL's vision tower, which Easel
does not load yet: they are refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

from easel.models.families.qwen_image21 import PROMPT_TEMPLATE, SYSTEM_MESSAGE


def qwen3_part(clip: Any) -> Any:
    """The Qwen3-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3vl":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen3-VL: load Qwen-Image 2.1's text encoder "
        "(qwen3vl_8b) with TextEncoderLoader type qwen_image"
    )


@contextmanager
def _pre_norm_output(model: Any) -> Any:
    """While inside, the language model's final norm passes its input through (the pipeline's
    hook): the last hidden state is the last decoder layer's output."""
    norm = model.norm
    handle = norm.register_forward_hook(lambda module, args, output: args[0])
    try:
        yield
    finally:
        handle.remove()


def system_tokens(tokenizer: Any) -> int:
    """How many tokens the system message takes: the ones dropped from the hidden states (the
    pipeline's `_drop_idx`, the tokenized system turn of the chat template)."""
    return len(tokenizer(SYSTEM_MESSAGE, add_special_tokens=False).input_ids)


def encode(clip: Any, text: str) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, T, D] float32, "image_pad": [1, T] bool}) for `text`."""
    import torch

    part = qwen3_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    prompt = PROMPT_TEMPLATE.format(text or " ")
    inputs = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    model = part.model
    device = next(model.parameters()).device
    with torch.inference_mode(), _pre_norm_output(model):
        out = model(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            output_hidden_states=True,
        )
    hidden = out.hidden_states[-1][0]
    drop = system_tokens(tokenizer)
    embeds = hidden[drop:].unsqueeze(0).float().cpu()
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return {
        "embeds": embeds,
        "image_pad": torch.zeros(1, embeds.shape[1], dtype=torch.bool),
    }


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the Qwen3-VL part's
    text in QwenImage21Pipeline's template."""
    from easel.models.text import Encoded

    part = qwen3_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
