"""Text conditioning for CLIPs with a T5 part (Flux: CLIP-L + T5-XXL): the T5 hidden states are
the embeddings, CLIP-L's pooled output the pooled embedding, as diffusers' FluxPipeline and
ComfyUI's Flux text encoder make them.

- CLIP-L parts are encoded by easel.models.text (weights, embeddings, chunks); only their
  pooled output is used.
- The T5 prompt is its tokens, EOS, then padding to at least 256 tokens (ComfyUI's Flux
  minimum; FluxPipeline with `max_sequence_length=256` gives the same embeddings) and at most
  512; T5 runs without an attention mask, as both do. A plain prompt's embeddings equal
  FluxPipeline's bit for bit.
- Prompt weights follow ComfyUI: a weighted token is `z_empty + (z - z_empty) * w`, `z_empty`
  being the empty prompt's encoding at the same position. `embedding:` names have no meaning for
  T5 and are left out with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from easel.models.families.flux import T5_MAX_TOKENS, T5_MIN_TOKENS
from easel.models.prompt_syntax import Embedding, parse_prompt


def is_t5_clip(clip: Any) -> bool:
    """Whether `clip` has a T5 part (then this module encodes it)."""
    return any(getattr(part, "kind", "clip") == "t5" for part in clip.parts)


def _tokens(part: Any, text: str, warnings: list[str]) -> tuple[list[int], list[float]]:
    """Token ids (EOS and padding included) and their weights."""
    tokenizer = part.tokenizer
    ids: list[int] = []
    weights: list[float] = []
    for piece in parse_prompt(text):
        if isinstance(piece, Embedding):
            message = (
                f"embedding {piece.name!r}: the T5 text encoder takes no embeddings; "
                "left out of its prompt"
            )
            if message not in warnings:
                warnings.append(message)
            continue
        piece_ids = tokenizer(piece.text, add_special_tokens=False).input_ids
        ids.extend(int(i) for i in piece_ids)
        weights.extend([piece.weight] * len(piece_ids))
    if len(ids) > T5_MAX_TOKENS - 1:
        warnings.append(
            f"the prompt has {len(ids)} T5 tokens, more than {T5_MAX_TOKENS - 1}: "
            "the rest is cut off"
        )
        ids, weights = ids[: T5_MAX_TOKENS - 1], weights[: T5_MAX_TOKENS - 1]
    ids.append(int(tokenizer.eos_token_id))
    weights.append(1.0)
    length = max(T5_MIN_TOKENS, len(ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    weights.extend([1.0] * (length - len(ids)))
    ids.extend([int(pad)] * (length - len(ids)))
    return ids, weights


def _run_t5(clip: Any, part: Any, ids: list[int]) -> Any:
    """T5 hidden states [1, T, D] float32 on the CPU."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    with torch.inference_mode():
        hidden = clip.forward(part)(torch.tensor([ids], device=device))[0]
    return hidden.float().cpu()


def _t5_embeds(clip: Any, part: Any, text: str, warnings: list[str]) -> tuple[Any, Any]:
    """(embeddings [1, T, D], attention mask [1, T]: 1 up to and including EOS)."""
    import torch

    ids, weights = _tokens(part, text, warnings)
    hidden = _run_t5(clip, part, ids)
    eos = ids.index(int(part.tokenizer.eos_token_id))
    mask = torch.zeros(1, len(ids), dtype=torch.bool)
    mask[0, : eos + 1] = True
    if any(w != 1.0 for w in weights):
        empty_ids, _ = _tokens(part, "", [])
        key = f"z_empty:{part.key}:{len(ids)}"
        if key not in clip.empty_cache:
            empty_ids += [empty_ids[-1]] * (len(ids) - len(empty_ids))
            clip.empty_cache[key] = _run_t5(clip, part, empty_ids[: len(ids)])
        z_empty = clip.empty_cache[key]
        w = torch.tensor(weights, dtype=hidden.dtype).view(1, -1, 1)
        hidden = torch.where(w != 1.0, (hidden - z_empty) * w + z_empty, hidden)
    return hidden, mask


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a CLIP with CLIP-L ("l") and T5 ("t5") parts: `texts[key]` per part
    (TextEncode gives every part the same text). Text encoders are offloaded afterwards when
    the manager's policy says so."""
    from easel.models.text import Encoded
    from easel.models.text import encode_prompts as encode_clip

    warnings: list[str] = []
    clip_parts = tuple(p for p in clip.parts if getattr(p, "kind", "clip") != "t5")
    t5_part = next(p for p in clip.parts if getattr(p, "kind", "clip") == "t5")
    pooled = None
    if clip_parts:
        restricted = replace(clip, parts=clip_parts, empty_cache=clip.empty_cache)
        encoded = encode_clip(restricted, {p.key: texts.get(p.key, "") for p in clip_parts})
        pooled = encoded.conditioning["pooled"]
        warnings.extend(encoded.warnings)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(t5_part.model)
    embeds, mask = _t5_embeds(clip, t5_part, texts.get(t5_part.key, ""), warnings)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model for part in clip.parts])
    return Encoded({"embeds": embeds, "pooled": pooled, "attention_mask": mask}, warnings)
