"""Text conditioning for Mage-Flow, as ComfyUI's comfy/text_encoders/mage_flow.py and Mage's own
pipeline encode a prompt: the prompt in Mage's chat template (a system turn describing the
task, the user turn, the assistant's opening), through Qwen3-VL; the last hidden state with
the final norm applied, from the user turn's content on (the system turn and
"<|im_start|>user\\n" dropped, found by the second "<|im_start|>": 34 tokens for text-to-image,
64 for edits with the real tokenizer).

- Images to edit: the edit template's system turn, and "Image N: <|vision_start|><|image_pad|>
  <|vision_end|>" per image before the instruction; the images go through transformers'
  Qwen3VLProcessor to the vision tower (as easel.models.qwen21_text sends them), each image's
  long edge cut to 384 first (TextEncodeMageFlowEdit does that). The vision tokens stay in the
  conditioning.
- A prompt is taken literally: `(word:1.2)` and `embedding:` have no special meaning here.
- One prompt per call: no padding, no attention mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from easel.models.families.mage_flow import EDIT_SYSTEM, T2I_SYSTEM, TEMPLATE, image_prefix

USER_HEADER = 3  # "<|im_start|>", "user", "\n"


def qwen3vl_part(clip: Any) -> Any:
    """The Qwen3-VL part of a CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3vl":
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Qwen3-VL: load Mage-Flow's text encoder (qwen3vl_4b) "
        "with TextEncoderLoader type mage"
    )


def prompt_text(text: str, images: int = 0) -> str:
    """The prompt in Mage's chat template: the edit template with `images` references."""
    if images:
        return TEMPLATE.format(EDIT_SYSTEM, image_prefix(images) + text)
    return TEMPLATE.format(T2I_SYSTEM, text)


def dropped(tokenizer: Any, ids: Sequence[int]) -> int:
    """How many leading tokens are the template's (the system turn and the user header): the
    second "<|im_start|>" and the two tokens after it, when they are "user" and a newline."""
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    starts = [i for i, token in enumerate(ids) if token == start]
    if len(starts) < 2:
        raise ValueError("the prompt is not in Mage's chat template (one <|im_start|> found)")
    second = starts[1]
    header = list(tokenizer("user\n", add_special_tokens=False).input_ids)
    if list(ids[second + 1 : second + 1 + len(header)]) == header:
        return second + 1 + len(header)
    return second


def last_hidden_state(clip: Any, part: Any, prompt: str, images: Sequence[Any]) -> Any:
    """[1, T, D] float32 on the CPU: the normed last hidden state of `prompt` (already in the
    template) with `images` (PIL) seen by the vision tower, and the token ids."""
    import torch

    model, tokenizer = part.model, part.tokenizer
    device = next(model.parameters()).device
    if images:
        from easel.models.qwen21_text import processor

        if not hasattr(getattr(model, "model", None), "visual"):
            raise ValueError(
                "this Qwen3-VL file has no vision tower (visual.*): the images to edit need "
                "ComfyUI's full qwen3vl_4b file"
            )
        call = processor(tokenizer)
        inputs = dict(call(text=[prompt], images=list(images), return_tensors="pt"))
    else:
        inputs = dict(tokenizer([prompt], add_special_tokens=False, return_tensors="pt"))
    kwargs = {k: v.to(device) for k, v in inputs.items() if hasattr(v, "to")}
    if "pixel_values" in kwargs:
        kwargs["pixel_values"] = kwargs["pixel_values"].to(next(model.parameters()).dtype)
    with torch.inference_mode():
        out = clip.forward(part)(**kwargs, output_hidden_states=True)
    # transformers 5 gives the final norm's output as the last hidden state (Mage's input)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        hidden = out.hidden_states[-1]
    return hidden.float().cpu(), [int(i) for i in inputs["input_ids"][0]]


def encode(clip: Any, text: str, images: Sequence[Any] = ()) -> Any:
    """A CONDITIONING ({"embeds": [1, T, D]}) for `text`, an edit's when `images` (RGB PIL
    images, already cut to Qwen3-VL's size) are given."""
    from easel.models.text import Encoded

    part = qwen3vl_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    hidden, ids = last_hidden_state(clip, part, prompt_text(text, len(images)), images)
    embeds = hidden[:, dropped(part.tokenizer, ids) :]
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return Encoded({"embeds": embeds, "pooled": None}, [])


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """TextEncode's entry point (easel.models.text.encode_prompts): a text-to-image prompt."""
    part = qwen3vl_part(clip)
    return encode(clip, texts.get(part.key, ""))
