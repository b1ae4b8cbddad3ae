"""Text encoding with a CLIP text tower: the diffusers pipeline's tokenisation, plus chunking
of prompts longer than the tokenizer's window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Encoded:
    """A CONDITIONING dict and the warnings worth showing the user."""

    conditioning: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _forward(clip: Any, input_ids: Any, attention_mask: Any) -> tuple[Any, Any]:
    """(last hidden state, pooled embedding: projected when the model has a projection)."""
    import torch

    model = clip.text_model
    device = next(model.parameters()).device
    use_mask = bool(getattr(model.config, "use_attention_mask", False))
    with torch.inference_mode():
        out = model(input_ids.to(device),
                    attention_mask=attention_mask.to(device) if use_mask else None)
        pooled = getattr(out, "text_embeds", None)
        if pooled is None:
            pooled = out.pooler_output
            if clip.text_projection is not None:
                pooled = clip.text_projection(pooled)
    return out.last_hidden_state.float().cpu(), pooled.float().cpu()


def encode_text(clip: Any, text: str) -> Encoded:
    """Encode `text` as the diffusers pipelines do (padded to the window); a longer prompt
    is encoded window by window and the hidden states concatenated (as A1111/ComfyUI do)."""
    import torch

    tokenizer = clip.tokenizer
    window = int(min(tokenizer.model_max_length, 512))
    ids = tokenizer(text, add_special_tokens=False, truncation=False).input_ids
    inner = window - 2
    warnings: list[str] = []
    if len(ids) <= inner:
        batch = tokenizer(text, padding="max_length", max_length=window, truncation=True,
                          return_tensors="pt")
        hidden, pooled = _forward(clip, batch.input_ids, batch.attention_mask)
        return Encoded({"embeds": hidden, "pooled": pooled,
                        "attention_mask": batch.attention_mask.bool()}, warnings)
    chunks = [ids[i:i + inner] for i in range(0, len(ids), inner)]
    warnings.append(f"the prompt has {len(ids)} tokens, more than the text encoder's "
                    f"{inner}: encoded in {len(chunks)} windows and concatenated")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    hiddens, masks, pooled_first = [], [], None
    for chunk in chunks:
        row = [bos, *chunk, eos]
        mask = [1] * len(row) + [0] * (window - len(row))
        row += [pad] * (window - len(row))
        hidden, pooled = _forward(clip, torch.tensor([row]), torch.tensor([mask]))
        hiddens.append(hidden)
        masks.append(torch.tensor([mask], dtype=torch.bool))
        if pooled_first is None:
            pooled_first = pooled
    return Encoded({"embeds": torch.cat(hiddens, dim=1), "pooled": pooled_first,
                    "attention_mask": torch.cat(masks, dim=1)}, warnings)
