"""ConditioningZeroOut: zeros where the conditioning has floats, everything else kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from easel.comfy.compat_nodes import ConditioningZeroOut, zeroed
from easel.core.context import Context


def test_dict_conditioning_keeps_masks_and_the_default_negative() -> None:
    uncond = {"embeds": torch.ones(1, 4, 8)}
    conditioning = {"embeds": torch.randn(1, 4, 8), "pooled": torch.randn(1, 8),
                    "mask": torch.ones(1, 4, dtype=torch.long), "extra": None, "uncond": uncond}
    out = ConditioningZeroOut.call(Context(), {"conditioning": conditioning})["conditioning"]
    assert torch.equal(out["embeds"], torch.zeros(1, 4, 8))
    assert torch.equal(out["pooled"], torch.zeros(1, 8))
    assert out["mask"] is conditioning["mask"] and out["extra"] is None
    assert out["uncond"] is uncond
    assert conditioning["embeds"].abs().sum() > 0  # the input is not changed in place


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
    assert torch.equal(zeroed(torch.full((2, 2), 5.0, dtype=torch.float16)),
                       torch.zeros(2, 2, dtype=torch.float16))
