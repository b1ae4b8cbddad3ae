"""TextGenerate (ComfyUI's node of comfy_extras/nodes_textgen.py): text written by the CLIP's
language model, for the prompt-enhancement subgraphs of the templates
(easel.models.text_generation does the work)."""

from __future__ import annotations

from typing import Annotated, Any

from easel.core.node import Input, NodeError, node
from easel.core.types import ANY, Clip, Image, Socket

AnyValue = Annotated[Any, Socket(ANY)]
SAMPLING_MODES = ["on", "off"]


@node(category="text", outputs={"generated_text": str, "thinking": str})
def TextGenerate(
    clip: Clip,
    prompt: str = Input("", multiline=True),
    max_length: int = Input(512, ge=1, le=32768),
    sampling_mode: str = Input("on", choices=SAMPLING_MODES),
    temperature: float = Input(0.7, ge=0.01, le=2.0, step=0.01),
    top_k: int = Input(64, ge=0, le=1000),
    top_p: float = Input(0.95, ge=0.0, le=1.0, step=0.01),
    min_p: float = Input(0.05, ge=0.0, le=1.0, step=0.01),
    repetition_penalty: float = Input(1.05, ge=0.0, le=5.0, step=0.01),
    seed: int = Input(0, ge=0, le=0xFFFFFFFFFFFFFFFF),
    presence_penalty: float = Input(0.0, ge=0.0, le=5.0, step=0.01),
    thinking: bool = False,
    use_default_template: bool = True,
    system_prompt: str = Input("", multiline=True),
    image: Image | None = None,
    video: Image | None = None,
    audio: AnyValue = None,
) -> tuple[str, str]:
    """Up to `max_length` new tokens from the CLIP's language model (Qwen, Gemma, Llama,
    Mistral) answering `prompt`: in the model's chat format with `system_prompt` when
    `use_default_template`, the prompt as given otherwise. `sampling_mode` "off" is greedy;
    "on" samples with temperature, top_k (0: off), top_p, min_p, the repetition and presence
    penalties, reproducibly from `seed`. `thinking` lets a reasoning model think first: its
    reasoning comes out as `thinking`, the answer as `generated_text`. `image` is read by
    Qwen2.5-VL loaded with its vision tower only."""
    from easel.models.text_generation import GenerationError, Sampling, generate

    if video is not None:
        raise NodeError("Easel's TextGenerate reads no video: disconnect it", "video")
    if audio is not None:
        raise NodeError("Easel's TextGenerate reads no audio: disconnect it", "audio")
    if sampling_mode == "on" and repetition_penalty <= 0.0:
        raise NodeError("must be above 0 (1 is no penalty)", "repetition_penalty")
    if getattr(clip, "patches", ()):
        raise NodeError(
            "Easel generates text with the text encoder's own weights only: apply the LoRA "
            "after TextGenerate",
            "clip",
        )
    sampling = Sampling(
        do_sample=sampling_mode == "on",
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty if sampling_mode == "on" else 1.0,
        presence_penalty=presence_penalty,
        seed=seed,
    )
    pictures = None
    if image is not None:
        from easel.models.qwen_text import to_pil

        pictures = to_pil(image)
    try:
        return generate(
            clip,
            prompt,
            max_new_tokens=max_length,
            sampling=sampling,
            thinking=thinking,
            template=use_default_template,
            system_prompt=system_prompt if use_default_template else "",
            images=pictures,
        )
    except GenerationError as exc:
        raise NodeError(str(exc), exc.input_name) from None


NODES = [TextGenerate]
