"""Nodes that let common ComfyUI graphs convert one to one (ConditioningZeroOut)."""

from __future__ import annotations

import dataclasses
from typing import Any

from easel.core.node import node
from easel.core.types import Conditioning

# The embeddings a conditioning dict carries. Everything else (the attention mask, the default
# negative "uncond", SDXL's size conditioning, a ControlNet chain, inpainting latents) is kept,
# as ComfyUI's node keeps everything but the text embeddings and the pooled output.
ZEROED = frozenset({"embeds", "pooled", "image_embeds"})


def zeroed(value: Any) -> Any:
    """A copy of `value` with every floating-point tensor replaced by zeros; everything else
    (token ids, masks, numbers, None) is kept, so any conditioning layout works."""
    import torch

    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value) if value.is_floating_point() else value
    if isinstance(value, dict):
        return {key: zeroed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        items = [zeroed(item) for item in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: zeroed(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **changes)
    return value


@node(category="conditioning", outputs={"conditioning": Conditioning})
def ConditioningZeroOut(conditioning: Conditioning) -> Any:
    """Conditioning of zeros with the same shapes: the "empty" negative prompt SDXL graphs use
    (as ComfyUI's node of the same name)."""
    if isinstance(conditioning, dict):
        return {
            key: zeroed(value) if key in ZEROED else value for key, value in conditioning.items()
        }
    return zeroed(conditioning)


NODES = [ConditioningZeroOut]
