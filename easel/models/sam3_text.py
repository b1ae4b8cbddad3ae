"""Prompts for SAM 3 (TextEncode on a SAM 3 checkpoint's CLIP), as ComfyUI's SAM 3 text encoder
makes them: brackets are dropped, commas separate prompts (each detected on its own), and a
trailing `:N` sets how many objects a prompt may find (default 1), e.g. "eye:2, window:4".

Each prompt is `<start> tokens <end>` padded with id 0 to 32 tokens, with an attention mask
over the real tokens; its embedding is the CLIP tower's last hidden state (after the final
layer norm), [1, 32, width]. SAM3_Detect projects it to the detector's width.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from easel.models.text import Encoded

MAX_TOKENS = 32


def parse_prompts(text: str) -> list[tuple[str, int]]:
    """(prompt, max detections) for each comma-separated part of `text`."""
    text = text.replace("(", "").replace(")", "")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    prompts = []
    for part in parts:
        match = re.match(r"^(.+?)\s*:\s*([\d.]+)\s*$", part)
        if match:
            prompts.append((match.group(1).strip(), max(1, round(float(match.group(2))))))
        else:
            prompts.append((part, 1))
    return prompts or [("", 1)]


def tokens(tokenizer: Any, text: str, warnings: list[str]) -> tuple[list[int], list[int]]:
    """Token ids and attention mask of one prompt, 32 long."""
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False).input_ids]
    if len(ids) > MAX_TOKENS - 2:
        warnings.append(
            f"the SAM 3 prompt {text!r} has {len(ids)} tokens, more than {MAX_TOKENS - 2}: "
            "the rest is cut off"
        )
        ids = ids[: MAX_TOKENS - 2]
    ids = [int(tokenizer.bos_token_id), *ids, int(tokenizer.eos_token_id)]
    mask = [1] * len(ids) + [0] * (MAX_TOKENS - len(ids))
    return ids + [0] * (MAX_TOKENS - len(ids)), mask


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Encoded:
    """CONDITIONING for SAM3_Detect: `sam3_prompts` lists (embeddings [1, 32, D], mask
    [1, 32], max detections) per prompt; `embeds` is the first prompt's embeddings."""
    import torch

    from easel.models.text import place

    (part,) = clip.parts
    text = texts.get(part.key, "")
    place(clip)
    model = part.model
    device = next(model.parameters()).device
    warnings: list[str] = []
    prompts = []
    for prompt, max_detections in parse_prompts(text):
        ids, mask = tokens(part.tokenizer, prompt, warnings)
        input_ids = torch.tensor([ids], device=device)
        attention = torch.tensor([mask], device=device)
        with torch.no_grad():
            hidden = model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        prompts.append((hidden.float().cpu(), attention.cpu(), max_detections))
    conditioning = {
        "embeds": prompts[0][0],
        "attention_mask": prompts[0][1],
        "sam3_prompts": prompts,
    }
    return Encoded(conditioning, warnings)
