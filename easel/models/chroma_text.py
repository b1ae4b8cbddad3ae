"""Text conditioning for Chroma (a T5-XXL encoder alone), and the token rules shared with
HiDream's T5 and Llama prompts: prompts parsed with ComfyUI's weight syntax, run with an
attention mask over the padding.

Chroma, as diffusers' ChromaPipeline: the prompt padded to 512 tokens, T5 run with its attention
mask (unlike Flux); the transformer's mask marks the prompt, its end token and the first padding
token (ChromaPipeline's rule; its mask is 1/0 floats, so the padding still shifts the attention a
little, and the padding length changes the image). T5TokenizerOptions (ComfyUI's node) sets
ComfyUI's shorter padding instead: at least `min_padding` padding tokens and `min_length` tokens
in all.

Prompt weights follow ComfyUI (`z_empty + (z - z_empty) * w`, `z_empty` the empty prompt's
encoding at the same position); `embedding:` names have no meaning here and are left out with a
warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from easel.models.prompt_syntax import Embedding, parse_prompt

T5_MAX_TOKENS = 512  # ChromaPipeline's largest max_sequence_length


@dataclass(frozen=True)
class Tokens:
    """A prompt's token ids (special tokens and padding included), their weights, and the
    attention mask (1 for the prompt, its special tokens; 0 for the padding)."""

    ids: list[int]
    weights: list[float]
    mask: list[int]

    @property
    def weighted(self) -> bool:
        return any(w != 1.0 for w in self.weights)


def tokens(
    tokenizer: Any,
    text: str,
    warnings: list[str],
    *,
    length: int | None = None,
    max_length: int,
    min_padding: int = 0,
    bos: bool = False,
    eos: bool = True,
    what: str = "T5",
) -> Tokens:
    """`text` as ids: [BOS] + pieces' tokens (cut to fit) + [EOS], then padding to `length`
    when given (a fixed length, as the pipelines pad), else `min_padding` padding tokens."""
    ids: list[int] = [int(tokenizer.bos_token_id)] if bos else []
    weights: list[float] = [1.0] * len(ids)
    for piece in parse_prompt(text):
        if isinstance(piece, Embedding):
            message = (
                f"embedding {piece.name!r}: the {what} text encoder takes no embeddings; "
                "left out of its prompt"
            )
            if message not in warnings:
                warnings.append(message)
            continue
        piece_ids = tokenizer(piece.text, add_special_tokens=False).input_ids
        ids.extend(int(i) for i in piece_ids)
        weights.extend([piece.weight] * len(piece_ids))
    room = max_length - (1 if eos else 0)
    if len(ids) > room:
        warnings.append(
            f"the prompt has {len(ids)} {what} tokens, more than {room}: the rest is cut off"
        )
        ids, weights = ids[:room], weights[:room]
    if eos:
        ids.append(int(tokenizer.eos_token_id))
        weights.append(1.0)
    mask = [1] * len(ids)
    total = length if length is not None else len(ids) + min_padding
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    extra = max(0, total - len(ids))
    return Tokens(ids + [int(pad)] * extra, weights + [1.0] * extra, mask + [0] * extra)


def run_t5(clip: Any, part: Any, toks: Tokens) -> Any:
    """T5 hidden states [1, T, D] float32 on the CPU, run with the attention mask."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    with torch.inference_mode():
        hidden = clip.forward(part)(
            torch.tensor([toks.ids], device=device),
            attention_mask=torch.tensor([toks.mask], device=device),
        )[0]
    return hidden.float().cpu()


def weighted(hidden: Any, toks: Tokens, empty: Any) -> Any:
    """ComfyUI's weighting of hidden states [..., T, D]: z_empty + (z - z_empty) * w where
    w != 1 (`empty`: the empty prompt's hidden states at the same positions)."""
    import torch

    w = torch.tensor(toks.weights, dtype=hidden.dtype).view(-1, 1)
    return torch.where(w != 1.0, (hidden - empty) * w + empty, hidden)


def t5_options(clip: Any) -> tuple[int, int] | None:
    """(min_padding, min_length) T5TokenizerOptions set on a CLIP, or None."""
    options = getattr(clip, "tokenizer_options", None) or {}
    if "min_padding" not in options and "min_length" not in options:
        return None
    return int(options.get("min_padding", 0)), int(options.get("min_length", 0))


def _encode(clip: Any, part: Any, text: str, warnings: list[str]) -> tuple[Any, Tokens]:
    """Hidden states and tokens of `text`: the prompt and its end token, then padding to 512
    tokens, or (T5TokenizerOptions) to at least `min_length` tokens with at least
    `min_padding` padding tokens."""
    count = len(tokens(part.tokenizer, text, warnings, max_length=T5_MAX_TOKENS).ids)
    options = t5_options(clip)
    total = T5_MAX_TOKENS
    if options is not None:
        min_padding, min_length = options
        total = min(T5_MAX_TOKENS, max(count + min_padding, min_length))
    toks = tokens(part.tokenizer, text, [], length=total, max_length=T5_MAX_TOKENS)
    hidden = run_t5(clip, part, toks)
    if toks.weighted:
        empty = tokens(part.tokenizer, "", [], length=total, max_length=T5_MAX_TOKENS)
        hidden = weighted(hidden, toks, run_t5(clip, part, empty))
    return hidden, toks


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a Chroma CLIP (one T5 part): `embeds` [1, T, D] and the mask the
    transformer attends with, `attention_mask` [1, T]: the prompt, its end token and the first
    padding token (ChromaPipeline's rule)."""
    import torch

    from easel.models.text import Encoded

    warnings: list[str] = []
    part = next(p for p in clip.parts if getattr(p, "kind", "clip") == "t5")
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    hidden, toks = _encode(clip, part, texts.get(part.key, ""), warnings)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    kept = sum(toks.mask)
    mask = torch.zeros(1, len(toks.ids), dtype=torch.bool)
    mask[0, : kept + 1] = True
    return Encoded({"embeds": hidden, "pooled": None, "attention_mask": mask}, warnings)
