"""Text conditioning for Z-Image (Qwen3) and Lumina 2 (Gemma 2): the second-to-last hidden state
of a causal language model over the prompt's tokens, as ZImagePipeline and Lumina2Pipeline
make it.

- Z-Image: the prompt inside Qwen3's chat template for one user message (ComfyUI's and the
  pipeline's `apply_chat_template(..., add_generation_prompt=True, enable_thinking=True)`),
  at most 512 tokens; the pipeline pads and then drops the padding, Easel never pads.
- Lumina 2: the text as given (TextEncodeLumina2 puts the system prompt and " <Prompt Start> "
  before it, as Lumina2Pipeline does), BOS first, at most 256 tokens. Lumina2Pipeline pads to
  256 and hands the transformer the mask, which reads only the unpadded tokens; Easel hands it
  the unpadded tokens and their mask (the same numbers: the encoder is causal).
- Z-Image's prompt is taken literally, brackets and all, as ComfyUI's Z-Image tokenizer takes
  it (`disable_weights`). Lumina 2's is read with ComfyUI's prompt syntax (escapes,
  `(text:1.2)`), as ComfyUI's Lumina tokenizer reads it, but Easel does not weight a language
  model's hidden states: the text is encoded unweighted, with a warning (`embedding:` names
  are left out, with a warning).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.lumina import (
    LUMINA2_MAX_TOKENS,
    ZIMAGE_MAX_TOKENS,
    ZIMAGE_TEMPLATE,
)
from easel.models.prompt_syntax import Embedding, parse_prompt


def plain_text(text: str, warnings: list[str]) -> str:
    """The prompt with ComfyUI's syntax read and weights dropped (warned)."""
    pieces = parse_prompt(text)
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, Embedding):
            _warn(
                warnings,
                f"embedding {piece.name!r}: this model's language-model text encoder takes "
                "no embeddings; left out of its prompt",
            )
            continue
        if piece.weight != 1.0:
            _warn(
                warnings,
                "prompt weights are not applied by this model's language-model text encoder: "
                "the text is encoded unweighted",
            )
        out.append(piece.text)
    return "".join(out)


def _warn(warnings: list[str], message: str) -> None:
    if message not in warnings:
        warnings.append(message)


def token_ids(part: Any, text: str, warnings: list[str]) -> list[int]:
    """The token ids the pipeline feeds the encoder (its padding left out)."""
    tokenizer = part.tokenizer
    limit = LUMINA2_MAX_TOKENS  # Gemma: its tokenizer puts BOS first
    if part.kind == "qwen3":  # Qwen adds no special tokens
        text, limit = ZIMAGE_TEMPLATE.format(text), ZIMAGE_MAX_TOKENS
    ids = [int(i) for i in tokenizer(text).input_ids]
    if len(ids) > limit:
        _warn(warnings, f"the prompt has {len(ids)} tokens, more than {limit}: the rest is cut off")
        ids = ids[:limit]
    return ids


def hidden_states(clip: Any, part: Any, ids: list[int]) -> Any:
    """The encoder's hidden state at `part.layer` [1, T, D], float32 on the CPU."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            output_hidden_states=True,
        )
    return out.hidden_states[int(part.layer)].float().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a Z-Image or Lumina 2 CLIP: `embeds` [1, T, D] and its
    `attention_mask` [1, T]. The text encoder is offloaded afterwards when the manager's
    policy says so."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    text = texts.get(part.key, "")
    ids = token_ids(part, text if part.kind == "qwen3" else plain_text(text, warnings), warnings)
    if not ids:  # Qwen has no BOS: an empty prompt still has its template's tokens
        ids = [int(part.tokenizer.pad_token_id or 0)]
    embeds = hidden_states(clip, part, ids)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, warnings)
