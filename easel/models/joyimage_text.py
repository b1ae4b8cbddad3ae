"""JoyImage Edit's text conditioning, as JoyImageEditPipeline (and ComfyUI's JoyImage text
encoder) make it: the prompt in the pipeline's chat template through Qwen3-VL, the hidden states
of its last decoder layer before the final norm (the pipeline hooks that layer; transformers 5
ties `hidden_states[-1]` to the normed output), the system turn and the user turn's
`<|im_start|>` dropped (34 tokens on Qwen's tokenizer).

With reference images the user turn starts with one vision block per image and transformers'
Qwen3VLProcessor (Qwen3-VL's image processor settings, easel.models.qwen21_text) shows them to
the vision tower, as the pipeline's `encode_prompt_multiple_images`. Text-only prompts are cut
at 2048 tokens (the pipeline's `text_token_max_length`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from easel.models.families.joyimage import DROPPED, MAX_TOKENS, TEXT_TEMPLATE, VISION_BLOCK


def dropped_tokens(tokenizer: Any) -> int:
    """How many leading tokens the hidden states lose (the pipeline's 34 on Qwen's)."""
    return len(tokenizer(DROPPED, add_special_tokens=False).input_ids)


def encode(clip: Any, text: str, images: Sequence[Any] = ()) -> dict[str, Any]:
    """A CONDITIONING ({"embeds": [1, T, D] float32 on the CPU}) for `text`, with `images`
    (RGB PIL images) seen by the vision tower."""
    import torch

    from easel.models.qwen21_text import _pre_norm_output, processor, qwen3_part

    part = qwen3_part(clip)
    model = part.model
    if images and not hasattr(getattr(model, "model", None), "visual"):
        raise ValueError(
            "this Qwen3-VL file has no vision tower (visual.*): JoyImage Edit's reference "
            "images need ComfyUI's full qwen3vl_8b file"
        )
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(model)
    tokenizer = part.tokenizer
    drop = dropped_tokens(tokenizer)
    prompt = TEXT_TEMPLATE.format(VISION_BLOCK * len(images) + text)
    if images:
        inputs = dict(processor(tokenizer)(text=[prompt], images=list(images), return_tensors="pt"))
    else:
        inputs = dict(
            tokenizer(
                [prompt],
                max_length=MAX_TOKENS + drop,
                truncation=True,
                return_tensors="pt",
                add_special_tokens=False,
            )
        )
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in inputs.items() if hasattr(v, "to")}
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = kwargs["pixel_values"].to(next(model.parameters()).dtype)
    with torch.inference_mode(), _pre_norm_output(model):
        out = model(**kwargs, output_hidden_states=True)
    embeds = out.hidden_states[-1][:, drop:].float().cpu()
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    return {"embeds": embeds}


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): a text-only prompt."""
    from easel.models.qwen21_text import qwen3_part
    from easel.models.text import Encoded

    part = qwen3_part(clip)
    return Encoded(encode(clip, texts.get(part.key, "")))
