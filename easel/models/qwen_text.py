"""Qwen-Image's text conditioning: the prompt in Qwen-Image's chat template through Qwen2.5-VL,
the last hidden states with the template's first tokens (system prompt and
"<|im_start|>user\\n") dropped, as QwenImagePipeline makes them (`prompt_template_encode`,
`prompt_template_encode_start_idx` 34) and ComfyUI's QwenImageTEModel too.

The Edit encoders add images: the prompt gets Qwen2.5-VL's image tokens (expanded by
transformers' Qwen2VLProcessor to one per merged 28x28 patch) and the vision tower sees the
images, as QwenImageEditPipeline and QwenImageEditPlusPipeline encode them (their template,
64 tokens dropped).

As in ComfyUI, prompt weights and `embedding:` names have no meaning here: the text is the
literal prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from easel.models.families.qwen_image import (
    EDIT_TEMPLATE,
    IMAGE_TOKENS,
    MAX_TOKENS,
    PROMPT_TEMPLATE,
)

# Qwen-Image's processor/preprocessor_config.json (Qwen2VLImageProcessor): pixels per image
# between 56x56 and 12,845,056 (transformers' default ceiling is lower).
MIN_PIXELS, MAX_PIXELS = 3136, 12845056


def qwen_part(clip: Any) -> Any:
    """The Qwen2.5-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen2.5-VL: load one with TextEncoderLoader "
        "type qwen_image"
    )


def image_processor() -> Any:
    """transformers' Qwen2VLImageProcessor as Qwen-Image's pipelines configure it."""
    from transformers import Qwen2VLImageProcessor

    return Qwen2VLImageProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS})


def processor(tokenizer: Any) -> Any:
    """transformers' Qwen2VLProcessor (image tokens expanded, images to patches) around
    `tokenizer`; its video part is required by its constructor and unused."""
    from transformers import Qwen2VLProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(
        image_processor=image_processor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
    )


def to_pil(image: Any) -> list[Any]:
    """Easel images ([B, 3, H, W] floats in [0, 1]) as 8-bit PIL images (what the pipelines
    hand the processor; an image loaded from a file comes back to its own bytes)."""
    import torch
    from PIL import Image

    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return [Image.fromarray(item.permute(1, 2, 0).numpy(), "RGB") for item in array]


def _hidden_states(part: Any, inputs: Mapping[str, Any]) -> Any:
    """The last hidden states [1, T, D] of Qwen2.5-VL for `inputs` (input_ids, attention_mask,
    and for images pixel_values / image_grid_thw)."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in inputs.items() if v is not None}
    if "pixel_values" in kwargs and type(model).__name__ == "Qwen2_5_VLTextModel":
        raise ValueError(
            "this Qwen2.5-VL file has no vision tower (visual.*): the Edit encoders need "
            "ComfyUI's full qwen_2.5_vl_7b file"
        )
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = kwargs["pixel_values"].to(next(model.parameters()).dtype)
    with torch.inference_mode():
        out = model(**kwargs, output_hidden_states=True)
    return out.hidden_states[-1]


def template_tokens(tokenizer: Any, template: str) -> int:
    """How many tokens of `template` come before the user's text: the ones dropped from the
    hidden states (with Qwen's tokenizer 34 for QwenImagePipeline's template, its
    `prompt_template_encode_start_idx`, and 64 for the Edit pipelines'; ComfyUI finds the same
    place, the end of "<|im_start|>user\n")."""
    return len(tokenizer(template.split("{}")[0], add_special_tokens=False).input_ids)


def encode(
    clip: Any, text: str, images: Sequence[Any] = (), *, template: str = PROMPT_TEMPLATE
) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, T, D] float32 on the CPU}) for `text` in `template`
    (with `images`, PIL, when the template's text holds image tokens)."""
    part = qwen_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    prompt = template.format(text)
    tokenizer = part.tokenizer
    drop = template_tokens(tokenizer, template)
    if images:
        inputs = dict(processor(tokenizer)(text=[prompt], images=list(images), return_tensors="pt"))
    else:
        inputs = dict(
            tokenizer([prompt], max_length=MAX_TOKENS + drop, truncation=True, return_tensors="pt")
        )
    hidden = _hidden_states(part, inputs)
    mask = inputs["attention_mask"].bool()
    embeds = hidden[mask.to(hidden.device)][drop:].unsqueeze(0)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return {"embeds": embeds.float().cpu()}


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen" part's text
    in QwenImagePipeline's template."""
    from easel.models.text import Encoded

    part = qwen_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))


def edit_prompt(text: str, count: int, numbered: bool) -> str:
    """The Edit encoders' user text: the image tokens before the prompt; numbered
    ("Picture 1: ...", Edit-2509's Plus encoder) or one bare image (the first Edit)."""
    if not count:
        return text
    if not numbered:
        return IMAGE_TOKENS + text
    return "".join(f"Picture {i + 1}: {IMAGE_TOKENS}" for i in range(count)) + text


def encode_edit(clip: Any, text: str, images: Sequence[Any], *, numbered: bool) -> dict[str, Any]:
    """An Edit encoder's CONDITIONING: `images` (PIL) seen by the vision tower."""
    return encode(
        clip,
        edit_prompt(text, len(images), numbered),
        images,
        template=EDIT_TEMPLATE,
    )
