"""Text conditioning for Fibo 2.0, as BriaFibo2Pipeline's `encode_prompt` makes it: the prompt
in Qwen3-VL's chat template for one user turn, the language model's hidden states 5 ... 35
each scaled to unit RMS per token (in float32, eps 1e-6), and six bundles of three layers side
by side (the Perceiver's first, then one per injection block).

- A prompt that is a JSON caption is cleaned and serialised compactly as the pipeline does for
  the prompt it generates from (its `_parse_prompt`, called here rather than rewritten: empty
  values and the score fields dropped); other text is taken as it is. A negative prompt is
  encoded as given (`clean=False`), as the pipeline encodes its negative prompt.
- With images to edit, the prompt is the pipeline's edit prompt (its `_get_edit_prompt`: a
  vision marker per image, the result's caption if the prompt has one, the edit instruction),
  and the images go through transformers' Qwen3VLProcessor to the vision tower, as the
  pipeline's processor sends them.
- Images of a caption's text are not drawn: a caption whose `text_render` entries have text
  (the pipeline draws them and shows them to Qwen3-VL) is refused rather than encoded
  differently.
- The conditioning's `embeds` are [1, T, 6 * 3 * D]: bundle k at features [k * 3D, (k+1) * 3D);
  the network adapter (easel.models.fibo2_denoiser) stacks them back to [B, 6, T, 3D].
- The pipeline truncates at 4096 tokens; Easel too. Nothing is padded (one prompt per call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.fibo2 import OUT_LAYERS, PROMPT_TEMPLATE

MAX_TOKENS = 4096


def _has_text_entries(caption: Any) -> bool:
    entries = (caption.get("text_render") or []) if isinstance(caption, dict) else []
    return any(
        isinstance(e, dict) and isinstance(e.get("text"), str) and e["text"] for e in entries
    )


TEXT_ENTRIES = (
    "the caption's text_render entries have text: Fibo 2.0 shows Qwen3-VL images of that text "
    "(drawn by the pipeline), which Easel does not draw; remove the text entries"
)


def prepared(text: str, clean: bool = True, images: int = 0) -> str:
    """The prompt as the pipeline encodes it: a JSON caption cleaned and compact; with
    `images` to edit, the pipeline's edit prompt (a vision marker per image, the caption of
    the result if any, the edit instruction)."""
    from diffusers.pipelines.bria_fibo2.pipeline_bria_fibo2 import BriaFibo2Pipeline

    if images:
        caption, _ = BriaFibo2Pipeline._parse_prompt(text)
        if _has_text_entries(caption):
            raise ModelError(TEXT_ENTRIES)
        return str(BriaFibo2Pipeline._get_edit_prompt(text, images))
    if not clean:
        return text
    parsed, _ = BriaFibo2Pipeline._parse_prompt(text)
    if isinstance(parsed, str):
        return text
    if _has_text_entries(parsed):
        raise ModelError(TEXT_ENTRIES)
    return json.dumps(parsed or {}, separators=(",", ":"), ensure_ascii=False)


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The prompt in the chat template, tokenised (truncated as the pipeline's processor)."""
    ids = tokenizer(PROMPT_TEMPLATE.format(text), add_special_tokens=False).input_ids
    return [int(i) for i in ids[:MAX_TOKENS]]


def bundles(clip: Any, part: Any, prompt: str, images: Sequence[Any] = ()) -> Any:
    """The six bundles side by side, [1, T, 6 * 3 * D], in the model's dtype on the CPU, for
    `prompt` (already prepared) with `images` (PIL) seen by the vision tower."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if images:
        from easel.models.qwen21_text import processor

        if not hasattr(getattr(model, "model", None), "visual"):
            raise ModelError(
                "this Qwen3-VL file has no vision tower (visual.*): the images to edit need "
                "ComfyUI's full qwen3vl_4b file"
            )
        inputs = processor(part.tokenizer)(
            text=[PROMPT_TEMPLATE.format(prompt)],
            images=list(images),
            max_length=MAX_TOKENS,
            truncation=True,
            return_tensors="pt",
        )
        kwargs = {k: v.to(device) for k, v in dict(inputs).items() if hasattr(v, "to")}
        kwargs["pixel_values"] = kwargs["pixel_values"].to(dtype)
    else:
        input_ids = torch.tensor([token_ids(part.tokenizer, prompt)], device=device)
        kwargs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    with torch.inference_mode():
        out = clip.forward(part)(**kwargs, output_hidden_states=True)
    hidden = out.hidden_states
    normalised = {}
    for layer in sorted({layer for bundle in OUT_LAYERS for layer in bundle}):
        states = hidden[layer].float()
        scale = torch.rsqrt(states.pow(2).mean(dim=-1, keepdim=True) + 1e-6)
        normalised[layer] = (states * scale).to(dtype)
    joined = [torch.cat([normalised[layer] for layer in bundle], dim=-1) for bundle in OUT_LAYERS]
    return torch.cat(joined, dim=-1).cpu()


def encode(clip: Any, text: str, clean: bool = True, images: Sequence[Any] = ()) -> Any:
    """A CONDITIONING for a Fibo 2.0 CLIP: `embeds` [1, T, 18 * D], `attention_mask` [1, T].
    With `images` (PIL, as Qwen3-VL sees them) the prompt is an edit's."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    embeds = bundles(clip, part, prepared(text, clean, len(images)), images)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, [])


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """TextEncode's entry point: the text of the CLIP's one part, cleaned as a caption."""
    (part,) = clip.parts
    return encode(clip, texts.get(part.key, ""), clean=True)
