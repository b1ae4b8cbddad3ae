"""Text conditioning for MiniMax H3, as MiniMaxH3ModularPipeline's text-to-video presentation and
ComfyUI's MiniMax H3 tokenizer make it: the prompt verbatim (no chat template, no special
tokens), and the language model's hidden state after decoder layer 50, before any final norm
(the pipeline's `hidden_states[50]`; ComfyUI's files are cut after that layer).

- The state is read from layer 50's output (a forward hook), so a full 64-layer file and a file
  cut after layer 50 give the same numbers.
- Every row is a text row (the DiT's modality tag 1): images are not part of a text-to-image
  prompt here. An empty prompt is one `<|endoftext|>` token, as ComfyUI encodes it.
- The conditioning's `embeds` are [1, T, 5120] in the encoder's dtype on the CPU; nothing is
  padded (one prompt per call).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.minimax_h3 import TEXT_LAYER

EMPTY_TOKEN = "<|endoftext|>"


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The prompt's ids, verbatim (one `<|endoftext|>` for an empty prompt)."""
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False).input_ids]
    if not ids:
        ids = [int(tokenizer.convert_tokens_to_ids(EMPTY_TOKEN))]
    return ids


def decoder_layers(model: Any) -> Any:
    """The language model's decoder layers (a Qwen3VLTextModel, or one inside a wrapper)."""
    for candidate in (model, getattr(model, "language_model", None), getattr(model, "model", None)):
        layers = getattr(candidate, "layers", None)
        if layers is not None:
            return layers
    inner = getattr(getattr(model, "model", None), "language_model", None)
    if inner is not None and getattr(inner, "layers", None) is not None:
        return inner.layers
    raise ValueError(f"{type(model).__name__} has no decoder layers to read")


def layer_state(clip: Any, part: Any, ids: list[int]) -> Any:
    """The hidden state after decoder layer 50 [1, T, D], in the model's dtype on the CPU."""
    import torch

    model = part.model
    layers = decoder_layers(model)
    if len(layers) < TEXT_LAYER:
        raise ValueError(
            f"the text encoder has {len(layers)} layers; MiniMax H3 reads the hidden state "
            f"after layer {TEXT_LAYER}"
        )
    caught: list[Any] = []

    def keep(_module: Any, _inputs: Any, output: Any) -> None:
        caught.append(output[0] if isinstance(output, tuple) else output)

    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    handle = layers[TEXT_LAYER - 1].register_forward_hook(keep)
    try:
        with torch.inference_mode():
            clip.forward(part)(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    finally:
        handle.remove()
    return caught[-1].cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a MiniMax H3 CLIP: `embeds` [1, T, D] and `attention_mask` [1, T].
    The text encoder is offloaded afterwards when the manager's policy says so."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    embeds = layer_state(clip, part, token_ids(part.tokenizer, texts.get(part.key, "")))
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, [])
