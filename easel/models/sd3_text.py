"""Text conditioning for SD3 / 3.5 CLIPs (CLIP-L "l", CLIP-G "g", T5-XXL "t5"), as
StableDiffusion3Pipeline.encode_prompt and ComfyUI's SD3 text encoder make it:

- CLIP-L and CLIP-G: the penultimate hidden states without the final norm (easel.models.text
  encodes each: weights, embeddings, chunks of 77), side by side on the channel axis, then
  padded with zeros to T5's width; the pooled embedding is CLIP-L's (unprojected, as ComfyUI
  and SD3's identity projection give) next to CLIP-G's projected one. When the two prompts need
  different numbers of chunks, the shorter is filled with empty-prompt chunks (ComfyUI's rule).
- T5: the prompt's tokens, EOS, then padding to at least 77 tokens (ComfyUI's SD3 minimum;
  the pipeline with `max_sequence_length=77` gives the same embeddings), at most 512; no
  attention mask, as both run it. Its hidden states follow the CLIP tokens.
- Without a T5 encoder (DualCLIPLoader type sd3) the T5 tokens are 77 zero vectors, as the
  pipeline without `text_encoder_3` makes them (ComfyUI leaves them out instead). With T5 alone
  (CLIPLoader type sd3) the embeddings are T5's and the pooled embedding is zeros, as ComfyUI.
  Widths the encoders do not know (T5's, the pooled width) are completed by the network
  adapter (easel.models.sd3_denoiser) from the transformer's config.
- Prompt weights follow ComfyUI (easel.models.text, easel.models.t5_text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.sd3 import T5_MAX_TOKENS, T5_MIN_TOKENS
from easel.models.text import Encoded

CLIP_TOKENS = 77  # one CLIP window; also the zero T5 tokens used without a T5 encoder


def _part(clip: Any, key: str) -> Any:
    return next((p for p in clip.parts if p.key == key), None)


def _encode_clip(clip: Any, part: Any, text: str) -> Encoded:
    """One CLIP tower's encoding through easel.models.text (a clip of that part alone)."""
    from easel.models.text import encode_prompts

    alone = replace(clip, parts=(part,), family=None, empty_cache=clip.empty_cache)
    return encode_prompts(alone, {part.key: text})


def _fill_chunks(clip: Any, part: Any, hidden: Any, chunks: int) -> Any:
    """`hidden` [1, n * 77, D] followed by empty-prompt chunks up to `chunks` windows."""
    import torch

    have = hidden.shape[1] // CLIP_TOKENS
    if have >= chunks:
        return hidden
    empty = _encode_clip(clip, part, "").conditioning["embeds"]
    return torch.cat([hidden, *[empty] * (chunks - have)], dim=1)


def _clip_block(clip: Any, texts: Mapping[str, str], warnings: list[str]) -> tuple[Any, Any] | None:
    """(CLIP-L ++ CLIP-G hidden states [1, T, Dl + Dg], pooled [1, Pl + Pg]), or None when
    the CLIP has no CLIP towers."""
    import torch

    part_l, part_g = _part(clip, "l"), _part(clip, "g")
    if part_l is None and part_g is None:
        return None
    if part_l is None or part_g is None:
        missing = "CLIP-G" if part_g is None else "CLIP-L"
        raise ModelError(
            f"this SD3 text encoder has no {missing}: SD3 takes CLIP-L and CLIP-G (with or "
            "without T5), or T5 alone"
        )
    encoded = [_encode_clip(clip, part, texts.get(part.key, "")) for part in (part_l, part_g)]
    for item in encoded:
        warnings.extend(w for w in item.warnings if w not in warnings)
    hiddens = [item.conditioning["embeds"] for item in encoded]
    windows = max(h.shape[1] for h in hiddens) // CLIP_TOKENS
    hiddens = [
        _fill_chunks(clip, part, hidden, windows)
        for part, hidden in zip((part_l, part_g), hiddens, strict=True)
    ]
    pooled = torch.cat([item.conditioning["pooled"] for item in encoded], dim=-1)
    return torch.cat(hiddens, dim=-1), pooled


def _t5_tokens(
    part: Any, text: str, warnings: list[str], leave_out_empty: bool
) -> tuple[list[int], list[float]]:
    """T5 ids and weights: easel.models.t5_text's tokens (EOS included) with SD3's padding.
    An empty prompt left out (CLIPTextEncodeSD3's empty_padding "none") is EOS alone, as
    ComfyUI encodes it."""
    from easel.models import t5_text

    eos = int(part.tokenizer.eos_token_id)
    if leave_out_empty and not text:
        return [eos], [1.0]
    ids, weights = t5_text._tokens(part, text, warnings)
    end = ids.index(eos) + 1  # t5_text keeps at most T5_MAX_TOKENS, EOS included
    length = max(T5_MIN_TOKENS, min(end, T5_MAX_TOKENS))
    return ids[:length], weights[:length]


def _t5_hidden(clip: Any, part: Any, text: str, warnings: list[str], leave_out: bool) -> Any:
    """T5 hidden states [1, T, D] float32, ComfyUI's weighting against the empty prompt."""
    import torch

    from easel.models import t5_text

    ids, weights = _t5_tokens(part, text, warnings, leave_out)
    hidden = t5_text._run_t5(clip, part, ids)
    if any(w != 1.0 for w in weights):
        key = f"z_empty:sd3:{part.key}:{len(ids)}"
        if key not in clip.empty_cache:
            empty_ids, _ = _t5_tokens(part, "", [], False)
            pad = empty_ids[-1]
            empty_ids = (empty_ids + [pad] * len(ids))[: len(ids)]
            clip.empty_cache[key] = t5_text._run_t5(clip, part, empty_ids)
        z_empty = clip.empty_cache[key]
        w = torch.tensor(weights, dtype=hidden.dtype).view(1, -1, 1)
        hidden = torch.where(w != 1.0, (hidden - z_empty) * w + z_empty, hidden)
    return hidden


def encode(clip: Any, texts: Mapping[str, str], *, leave_out_empty: bool = False) -> Encoded:
    """A CONDITIONING for an SD3 CLIP: `texts[key]` per part ("l", "g", "t5").
    `leave_out_empty` is CLIPTextEncodeSD3's empty_padding "none": when both CLIP prompts are
    empty the CLIP tokens are left out (pooled zeros), an empty T5 prompt is EOS alone."""
    import torch
    import torch.nn.functional as F

    if not clip.parts:
        raise ModelError(
            f"{clip.name} holds no text encoders: load SD3's with TripleTextEncoderLoader "
            "(clip_l, clip_g and t5xxl files, type sd3)"
        )
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        for part in clip.parts:
            manager.place(part.model)
    leave_out_clip = leave_out_empty and not texts.get("l") and not texts.get("g")
    block = None if leave_out_clip else _clip_block(clip, texts, warnings)
    t5_part = _part(clip, "t5")
    if t5_part is not None:
        t5 = _t5_hidden(clip, t5_part, texts.get("t5", ""), warnings, leave_out_empty)
        if block is None:
            embeds = t5
        else:
            clip_hidden = F.pad(block[0], (0, max(0, t5.shape[-1] - block[0].shape[-1])))
            embeds = torch.cat([clip_hidden, t5], dim=1)
    elif block is not None:  # no T5 encoder: zero T5 tokens (StableDiffusion3Pipeline)
        zeros = torch.zeros(1, CLIP_TOKENS, block[0].shape[-1])
        embeds = torch.cat([block[0], zeros], dim=1)
    else:
        embeds = torch.zeros(1, CLIP_TOKENS, 1)  # nothing at all: zeros, widened later
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model for part in clip.parts])
    pooled = block[1] if block is not None else None
    return Encoded({"embeds": embeds, "pooled": pooled}, warnings)


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Encoded:
    """The family's text encoding (easel.models.text.encode_prompts calls it)."""
    return encode(clip, texts)
