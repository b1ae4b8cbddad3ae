"""Text conditioning for Ideogram 4: the outputs of 13 decoder layers of Qwen3-VL-8B's language
model (layers 0, 3, ..., 33 and 35, before the final norm) side by side per token, over the
prompt in Qwen3-VL's chat template for one user turn, as Ideogram4Pipeline's `encode_prompt`
and ComfyUI's Ideogram 4 encoder make them.

- The layer outputs are caught with forward hooks on the decoder layers: transformers'
  `hidden_states` gives the last layer's output after the final norm, which Ideogram 4 does
  not read.
- Ideogram4Pipeline left-pads every prompt to 2048 tokens, masks the padding out and counts
  positions over real tokens only; the transformer keeps the padding in a segment of its own.
  Easel never pads, as ComfyUI: the same numbers for every real token (the encoder is causal).
- The conditioning's `embeds` are [1, T, D * 13] in the pipeline's (and ComfyUI's) order:
  feature d of tap k at d * 13 + k.
- The prompt is taken literally (a prompt that already starts with "<|im_start|>" is used as it
  is, as ComfyUI's tokenizer does) and whole, as ComfyUI's (the pipeline's limit,
  max_sequence_length, is the length it pads to).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.ideogram4 import PROMPT_TEMPLATE, TAP_LAYERS


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The prompt in the chat template, tokenised."""
    templated = text if text.startswith("<|im_start|>") else PROMPT_TEMPLATE.format(text)
    return [int(i) for i in tokenizer(templated, add_special_tokens=False).input_ids]


def layer_outputs(clip: Any, part: Any, ids: list[int]) -> Any:
    """The tapped decoder-layer outputs [1, T, D, 13], float32 on the CPU."""
    import torch

    model = part.model
    layers = model.layers
    wanted = [i - 1 for i in TAP_LAYERS]  # hidden_states index i is decoder layer i - 1's output
    if len(layers) <= max(wanted):
        raise ValueError(
            f"the text encoder has {len(layers)} layers; Ideogram 4 reads the outputs of layers "
            f"{wanted} (Qwen3-VL-8B's 36)"
        )
    caught: dict[int, Any] = {}

    def catch(index: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            caught[index] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [layers[i].register_forward_hook(catch(i)) for i in wanted]
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    try:
        with torch.inference_mode():
            clip.forward(part)(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack([caught[i] for i in wanted], dim=-1).float().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for an Ideogram 4 CLIP: `embeds` [1, T, 13 * D] and `attention_mask`
    [1, T]. The text encoder is offloaded afterwards when the manager's policy says so."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    ids = token_ids(part.tokenizer, texts.get(part.key, ""))
    states = layer_outputs(clip, part, ids)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    batch, length, width, taps = states.shape
    embeds = states.reshape(batch, length, width * taps)
    mask = torch.ones(1, length, dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, warnings)
