"""ConditioningZeroOut: the embeddings become zeros, everything else the conditioning carries
is kept (as ComfyUI's node keeps all but the text embeddings and the pooled output)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from easel.core.context import Context
from easel.nodes.comfy_compat import ConditioningZeroOut, zeroed


def test_sdxl_conditioning_zeroes_embeds_and_pooled_and_keeps_the_rest() -> None:
    uncond = {"embeds": torch.ones(1, 4, 8)}
    control = [{"hint": torch.ones(1, 3, 8, 8), "strength": 0.5}]
    conditioning = {
        "embeds": torch.randn(1, 4, 8),
        "pooled": torch.randn(1, 8),
        "attention_mask": torch.ones(1, 4, dtype=torch.bool),
        "extra": None,
        "time_ids": torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]),
        "control": control,
        "uncond": uncond,
    }
    out = ConditioningZeroOut.call(Context(), {"conditioning": conditioning})["conditioning"]
    assert torch.equal(out["embeds"], torch.zeros(1, 4, 8))
    assert torch.equal(out["pooled"], torch.zeros(1, 8))
    assert out["attention_mask"] is conditioning["attention_mask"] and out["extra"] is None
    # SDXL's size conditioning, the ControlNet chain and the default negative are not zeroed.
    assert out["time_ids"] is conditioning["time_ids"]
    assert out["control"] is control and out["uncond"] is uncond
    assert conditioning["embeds"].abs().sum() > 0  # the input is not changed in place
    assert sorted(out) == sorted(conditioning)


def test_image_embeddings_are_zeroed_too() -> None:
    conditioning = {"image_embeds": torch.ones(2, 16)}
    out = ConditioningZeroOut.call(Context(), {"conditioning": conditioning})["conditioning"]
    assert torch.equal(out["image_embeds"], torch.zeros(2, 16))


def test_other_layouts() -> None:
    class Pair(NamedTuple):
        cond: torch.Tensor
        size: int

    @dataclass
    class Cond:
        embeds: torch.Tensor
        ids: torch.Tensor

    pair = zeroed([Pair(torch.ones(2), 3)])
    assert isinstance(pair[0], Pair) and pair[0].size == 3
    assert torch.equal(pair[0].cond, torch.zeros(2))
    cond = zeroed(Cond(torch.ones(3), torch.arange(3)))
    assert torch.equal(cond.embeds, torch.zeros(3)) and torch.equal(cond.ids, torch.arange(3))
    assert torch.equal(
        zeroed(torch.full((2, 2), 5.0, dtype=torch.float16)), torch.zeros(2, 2, dtype=torch.float16)
    )


def test_registered_from_the_nodes_package() -> None:
    from easel.core.plugins import load_plugins

    registry = load_plugins(entry_points=False)
    node_type = registry.get("ConditioningZeroOut")
    assert node_type is not None and node_type.fn.__module__ == "easel.nodes.comfy_compat"
