"""Anima's text conditioning, as diffusers' AnimaTextEncoderStep makes it: the prompt in Qwen's
tokens (no template, no special tokens) through the Qwen3 text encoder, its last hidden states
(padding zeroed), and the same prompt's T5 token ids (ending in </s>), both cut at 512 tokens.
The LLM adapter that turns the two into the DiT's context belongs to the diffusion model file,
so the sampler's network adapter runs it (easel.models.anima_denoiser), as ComfyUI runs it in
its Anima model.

An empty prompt has no Qwen token: diffusers then encodes one masked token, whose zeroed hidden
state Easel keeps (and the adapter attends to it unmasked, where a fully masked attention would
give NaN).

ComfyUI's prompt syntax is read as ComfyUI reads it for Anima (easel.models.prompt_syntax): the
Qwen3 sees the text with the syntax removed and every weight 1, and the weights ride on the T5
ids, each weighted piece tokenised on its own, multiplying the adapter's output per T5 token
(ComfyUI's `t5xxl_weights`). A prompt without weights is tokenised whole, as the pipeline does.
Embeddings (`embedding:name`) are left out, with a warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_TOKENS = 512  # AnimaTextEncoderStep's max_sequence_length


def anima_part(clip: Any) -> Any:
    """The Qwen3 part of an Anima CLIP, or a ValueError naming what the CLIP is."""
    for part in clip.parts:
        if getattr(part, "kind", "") == "qwen3" and hasattr(part.tokenizer, "t5"):
            return part
    raise ValueError(
        f"this CLIP ({clip.name}) is not Anima's Qwen3: load qwen_3_06b_base with "
        "TextEncoderLoader type stable_diffusion"
    )


def read_prompt(text: str, warnings: list[str]) -> tuple[str, list[tuple[str, float]]]:
    """(the plain text, its weighted pieces) of a prompt in ComfyUI's syntax."""
    from easel.models.prompt_syntax import Embedding, parse_prompt

    pieces: list[tuple[str, float]] = []
    for piece in parse_prompt(text):
        if isinstance(piece, Embedding):
            message = f"embedding {piece.name!r}: Anima's text encoder takes no embeddings"
            if message not in warnings:
                warnings.append(message)
            continue
        pieces.append((piece.text, float(piece.weight)))
    return "".join(t for t, _ in pieces), pieces


def t5_tokens(
    t5: Any, plain: str, pieces: list[tuple[str, float]]
) -> tuple[list[int], list[float]]:
    """The T5 ids (ending in </s>, at most 512) and each one's weight."""
    if all(weight == 1.0 for _, weight in pieces):
        ids = list(t5(plain, truncation=True, max_length=MAX_TOKENS)["input_ids"])
        return ids, [1.0] * len(ids)
    ids, weights = [], []
    for piece, weight in pieces:
        found = t5(piece, add_special_tokens=False)["input_ids"]
        ids += found
        weights += [weight] * len(found)
    ids, weights = ids[: MAX_TOKENS - 1], weights[: MAX_TOKENS - 1]
    return [*ids, int(t5.eos_token_id)], [*weights, 1.0]


def encode(clip: Any, text: str, warnings: list[str] | None = None) -> dict[str, Any]:
    """A CONDITIONING: {"embeds": Qwen3 states [1, T, D], "attention_mask": [1, T],
    "t5_ids": [1, S] (int64), "t5_mask": [1, S], and "t5_weights" [1, S] when the prompt
    weights any piece}, on the CPU."""
    import torch

    part = anima_part(clip)
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    tokenizer = part.tokenizer
    plain, pieces = read_prompt(text, warnings if warnings is not None else [])
    qwen = tokenizer.qwen(plain, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    t5, t5_weights = t5_tokens(tokenizer.t5, plain, pieces)
    mask = [1] * len(qwen)
    if not qwen:
        qwen, mask = [0], [0]
    model = part.model
    device = next(model.parameters()).device
    input_ids = torch.tensor([qwen], device=device)
    attention = torch.tensor([mask], device=device)
    with torch.inference_mode():
        hidden = model(input_ids=input_ids, attention_mask=attention).last_hidden_state
    embeds = hidden * attention[..., None].to(hidden.dtype)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    out = {
        "embeds": embeds.float().cpu(),
        "attention_mask": attention.cpu(),
        "t5_ids": torch.tensor([t5], dtype=torch.long),
        "t5_mask": torch.ones(1, len(t5), dtype=torch.long),
    }
    if any(weight != 1.0 for weight in t5_weights):
        out["t5_weights"] = torch.tensor([t5_weights], dtype=torch.float32)
    return out


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts): the "qwen3" part's text."""
    from easel.models.text import Encoded

    part = anima_part(clip)
    warnings: list[str] = []
    return Encoded(encode(clip, texts.get(part.key, ""), warnings), warnings)
