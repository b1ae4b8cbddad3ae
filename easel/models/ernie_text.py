"""Text conditioning for ERNIE-Image: the second-to-last hidden state of Ministral-3-3B's
language model over the bare prompt, BOS first, as ErnieImagePipeline (`add_special_tokens`,
`hidden_states[-2]`) and ComfyUI's ERNIE encoder (start token 1, layer -2) make it. There is no
chat template and no padding (the pipeline pads a batch to its longest prompt and masks the
padding out; each prompt is encoded alone). The prompt is taken literally, as ComfyUI's
tokenizer takes it (`disable_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BOS_ID = 1  # Mistral's <s>, ComfyUI's start token


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """BOS, then the prompt's tokens."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        found = tokenizer.convert_tokens_to_ids("<s>")
        bos = found if isinstance(found, int) and found != tokenizer.unk_token_id else BOS_ID
    ids = [int(i) for i in tokenizer(text, add_special_tokens=False).input_ids]
    return [int(bos), *ids]


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for an ERNIE-Image CLIP: `embeds` [1, T, D] and `attention_mask` [1, T].
    The text encoder is offloaded afterwards when the manager's policy says so."""
    import torch

    from easel.models.text import Encoded

    (part,) = clip.parts
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    ids = token_ids(part.tokenizer, texts.get(part.key, ""))
    device = next(part.model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            output_hidden_states=True,
        )
    embeds = out.hidden_states[int(part.layer)].float().cpu()
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    mask = torch.ones(1, embeds.shape[1], dtype=torch.bool)
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, [])
