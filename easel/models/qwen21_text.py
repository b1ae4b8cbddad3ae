"""Qwen-Image 2.1's text conditioning: the prompt in QwenImage21Pipeline's chat template through
Qwen3-VL's language model; the hidden states of its last decoder layer, before the final norm
(what the transformer was trained on: the pipeline neutralises the norm with a forward hook,
since transformers 5 ties `hidden_states[-1]` to the normed output, and so does this module),
with the system message's tokens dropped.

The CONDITIONING carries `embeds` [1, T, D] and `image_pad` [1, T] (where the encoder's image
slots are; all False for a text prompt). An empty prompt is encoded as " ", as the pipeline and
ComfyUI's `prevent_empty_text` do.

Reference images (the edit templates) go before the prompt in the user turn,
"<imageN><|vision_start|><|image_pad|><|vision_end|>" each, and through transformers'
Qwen3VLProcessor (one `<|image_pad|>` per merged 32x32 pixel patch; the image processor as
Qwen3-VL's preprocessor_config.json sets it) to the vision tower, as QwenImage21Pipeline
encodes them; each slot stands for 2x2 latent tokens of the image's latent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from easel.models.families.qwen_image21 import (
    PROMPT_TEMPLATE,
    SYSTEM_MESSAGE,
    image_prefix,
)

# Qwen3-VL's preprocessor_config.json (Qwen/Qwen3-VL-8B-Instruct, as Qwen-Image 2.1's
# processor/ folder has it): patches of 16 merged 2x2, mean and std 0.5, between 65,536 and
# 16,777,216 pixels an image.
IMAGE_PROCESSOR: dict[str, Any] = {
    "patch_size": 16,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "size": {"shortest_edge": 65536, "longest_edge": 16777216},
}


def qwen3_part(clip: Any) -> Any:
    """The Qwen3-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3vl":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen3-VL: load Qwen-Image 2.1's text encoder "
        "(qwen3vl_8b) with TextEncoderLoader type qwen_image"
    )


def processor(tokenizer: Any) -> Any:
    """transformers' Qwen3VLProcessor around `tokenizer` (its video part is required by its
    constructor and unused)."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**IMAGE_PROCESSOR),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(),
    )


def _language_model(model: Any) -> Any:
    inner = getattr(model, "model", model)
    return getattr(inner, "language_model", inner)


@contextmanager
def _pre_norm_output(model: Any) -> Any:
    """While inside, the language model's final norm passes its input through (the pipeline's
    hook): the last hidden state is the last decoder layer's output."""
    norm = _language_model(model).norm
    handle = norm.register_forward_hook(lambda module, args, output: args[0])
    try:
        yield
    finally:
        handle.remove()


def system_tokens(tokenizer: Any) -> int:
    """How many tokens the system message takes: the ones dropped from the hidden states (the
    pipeline's `_drop_idx`, the tokenized system turn of the chat template)."""
    return len(tokenizer(SYSTEM_MESSAGE, add_special_tokens=False).input_ids)


def encode(clip: Any, text: str, images: Sequence[Any] = ()) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, T, D] float32, "image_pad": [1, T] bool}) for `text`,
    with `images` (RGB PIL images) seen by the vision tower."""
    import torch

    part = qwen3_part(clip)
    model = part.model
    if images and not hasattr(getattr(model, "model", None), "visual"):
        raise ValueError(
            "this Qwen3-VL file has no vision tower (visual.*): reference images need "
            "ComfyUI's full qwen3vl_8b file"
        )
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(model)
    tokenizer = part.tokenizer
    user = image_prefix(len(images)) + (text or " ")
    prompt = PROMPT_TEMPLATE.format(user)
    if images:
        inputs = dict(processor(tokenizer)(text=[prompt], images=list(images), return_tensors="pt"))
    else:
        inputs = dict(tokenizer([prompt], return_tensors="pt", add_special_tokens=False))
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in inputs.items() if hasattr(v, "to")}
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = kwargs["pixel_values"].to(next(model.parameters()).dtype)
    with torch.inference_mode(), _pre_norm_output(model):
        out = model(**kwargs, output_hidden_states=True)
    hidden = out.hidden_states[-1][0]
    drop = system_tokens(tokenizer)
    embeds = hidden[drop:].unsqueeze(0).float().cpu()
    pad_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    image_pad = (inputs["input_ids"][0] == pad_id)[drop:].unsqueeze(0).cpu()
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return {"embeds": embeds, "image_pad": image_pad}


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the Qwen3-VL part's
    text in QwenImage21Pipeline's template."""
    from easel.models.text import Encoded

    part = qwen3_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
