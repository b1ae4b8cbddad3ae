"""Text conditioning for HiDream-I1 (the family's `text_encoding`), as diffusers'
HiDreamImagePipeline makes it (its `encode_prompt`, max_sequence_length 128):

- CLIP-L and CLIP-G ("l", "g"): each prompt padded to 128 tokens (the tower's positions at most;
  the pipeline caps CLIP at 218), the projected pooled outputs (`text_embeds`) concatenated:
  `pooled` [1, 768 + 1280];
- T5 ("t5"): tokens + end token padded to 128, run with the attention mask: `t5` [1, 128, D]
  (also `embeds`, for code that reads a conditioning's embeddings);
- Llama ("llama"): begin token + tokens padded to 128 with the end token, run with the mask,
  the hidden states of every layer after the embeddings stacked: `llama` [layers, 1, 128, D].

Prompt weights `(text:1.2)` follow ComfyUI for T5 and Llama (easel.models.chroma_text); the
pooled CLIP embeddings take the prompt's text without weights, as ComfyUI's pooled output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.chroma_text import Tokens, run_t5, tokens, weighted
from easel.models.families.hidream import CLIP_MAX_TOKENS, TOKENS
from easel.models.prompt_syntax import Embedding, parse_prompt


def _plain(text: str) -> str:
    """The prompt's text without weight syntax (for the pooled CLIP embeddings)."""
    return "".join(p.text for p in parse_prompt(text) if not isinstance(p, Embedding))


def _pooled(clip: Any, part: Any, text: str) -> Any:
    """A CLIP tower's projected pooled output [1, P] for `text` padded to 128 tokens."""
    import torch

    model = part.model
    positions = int(model.config.max_position_embeddings)
    length = min(TOKENS, CLIP_MAX_TOKENS, positions)
    ids = part.tokenizer(
        _plain(text), padding="max_length", max_length=length, truncation=True
    ).input_ids
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = clip.forward(part)(torch.tensor([ids], device=device))
    return out.text_embeds.float().cpu()


def _run_llama(clip: Any, part: Any, toks: Tokens) -> Any:
    """Llama's hidden states after each layer [layers, 1, T, D] float32 on the CPU."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = clip.forward(part)(
            torch.tensor([toks.ids], device=device),
            attention_mask=torch.tensor([toks.mask], device=device),
            output_hidden_states=True,
        )
    return torch.stack(out.hidden_states[1:], dim=0).float().cpu()


def _t5(clip: Any, part: Any, text: str, warnings: list[str]) -> Any:
    toks = tokens(part.tokenizer, text, warnings, length=TOKENS, max_length=TOKENS)
    hidden = run_t5(clip, part, toks)
    if toks.weighted:
        empty = tokens(part.tokenizer, "", [], length=TOKENS, max_length=TOKENS)
        hidden = weighted(hidden, toks, run_t5(clip, part, empty))
    return hidden


def _llama(clip: Any, part: Any, text: str, warnings: list[str]) -> Any:
    def toks_of(prompt: str, notes: list[str]) -> Tokens:
        return tokens(
            part.tokenizer,
            prompt,
            notes,
            length=TOKENS,
            max_length=TOKENS,
            bos=True,
            eos=False,
            what="Llama",
        )

    toks = toks_of(text, warnings)
    hidden = _run_llama(clip, part, toks)
    if toks.weighted:
        hidden = weighted(hidden, toks, _run_llama(clip, part, toks_of("", [])))
    return hidden


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a HiDream CLIP (parts l, g, t5, llama): `texts[key]` per part
    (TextEncode gives every part the same text). Text encoders are offloaded afterwards when
    the manager's policy says so."""
    import torch

    from easel.models.text import Encoded

    parts = {part.key: part for part in clip.parts}
    missing = [k for k in ("l", "g", "t5", "llama") if k not in parts]
    if missing:
        raise ValueError(
            f"a HiDream prompt needs the text encoders l, g, t5 and llama; this CLIP lacks "
            f"{', '.join(missing)}"
        )
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        for part in clip.parts:
            manager.place(part.model)
    warnings: list[str] = []
    pooled = torch.cat([_pooled(clip, parts[k], texts.get(k, "")) for k in ("l", "g")], dim=-1)
    t5 = _t5(clip, parts["t5"], texts.get("t5", ""), warnings)
    llama = _llama(clip, parts["llama"], texts.get("llama", ""), warnings)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model for part in clip.parts])
    return Encoded({"embeds": t5, "t5": t5, "llama": llama, "pooled": pooled}, warnings)
