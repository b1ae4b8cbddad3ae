"""MiniMax H3's DiT from a ComfyUI-layout state dict: diffusers' MiniMaxH3Transformer3DModel,
keys converted by diffusers' `convert_minimax_h3_transformer_checkpoint_to_diffusers` (the
published single files' stacked `[q; k; v]` rows, `[gate; value]` feed-forwards).

ComfyUI's "pruned" files (the templates' `minimax_h3_fl2va_pruned_*`) replace the timestep MLP
by `adaln_t_table` [grid, D]: the time-embedding curve sampled on `grid` points of t in [0, 1],
read by linear interpolation, and AdaLN projections of width D that take it without SiLU (in
float32). diffusers refuses that form, so Easel builds the model with `time_embed_dim` D and
swaps in three small modules (`TableTimeEmbedding`, `CurveModulation`, `CurveNormOut`) that do
what ComfyUI's `MiniMaxH3Model` does with them; everything else is diffusers' code. These are
hand-written because no library has them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from easel.models.families import minimax_h3


class TableTimeEmbedding(nn.Module):
    """`adaln_t_table` read at t in [0, 1]: the two grid rows around t blended linearly (t
    clamped to the curve's ends; t = 1 reads the last interval's end)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.float(), requires_grad=False)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        table = self.table.float()
        position = timestep.float().clamp(0.0, 1.0) * (table.shape[0] - 1)
        lower = position.floor().long().clamp(max=table.shape[0] - 2)
        fraction = (position - lower).unsqueeze(1)
        return torch.lerp(table[lower], table[lower + 1], fraction)


class CurveModulation(nn.Module):
    """A block's AdaLN projection in the pruned form: the curve coordinates projected without
    SiLU, in float32, into six (timestep, modality) tables."""

    hidden_size: int
    linear: nn.Linear

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        weight = self.linear.weight
        out = nn.functional.linear(temb.float(), weight.float(), self.linear.bias.float())
        out = out.to(weight.dtype).view(-1, 6 * self.hidden_size)
        return out.chunk(6, dim=-1)


class CurveNormOut(nn.Module):
    """The output norm's shift / scale in the pruned form (no SiLU, float32 projection)."""

    norm: nn.Module
    linear: nn.Linear

    def forward(
        self, hidden_states: torch.Tensor, temb: torch.Tensor, timestep_indices: torch.Tensor
    ) -> torch.Tensor:
        weight = self.linear.weight
        out = nn.functional.linear(temb.float(), weight.float(), self.linear.bias.float())
        shift, scale = out.to(hidden_states.dtype).chunk(2, dim=-1)
        hidden_states = self.norm(hidden_states)
        return hidden_states * (1.0 + scale.index_select(0, timestep_indices)) + (
            shift.index_select(0, timestep_indices)
        )


# The checkpoint's float32 island: the patch projections, the timestep MLP (its table in the
# pruned form) and the output heads; the rest runs in the compute dtype.
KEEP_FP32 = ("proj_in", "audio_proj_in", "time_embedder", "proj_out", "audio_proj_out")


def _as_curve_form(model: Any, table: torch.Tensor) -> None:
    """Swap the timestep MLP and the AdaLN modules for the pruned form's (weights kept)."""
    model.time_proj = nn.Identity()
    model.time_embedder = TableTimeEmbedding(table)
    for block in model.transformer_blocks:
        block.adaln_proj.__class__ = type(
            "CurveModulation", (CurveModulation, type(block.adaln_proj)), {}
        )
    model.norm_out.__class__ = type("CurveNormOut", (CurveNormOut, type(model.norm_out)), {})


def build(state: Mapping[str, Any], dtype: Any) -> Any:
    """MiniMaxH3Transformer3DModel from ComfyUI-layout weights (keys without prefix), either
    form. Built on the meta device, filled, its rotary buffer computed from the config; in a
    half dtype the patch projections, the timestep MLP and the output heads stay float32, as
    the released checkpoint keeps them."""
    from diffusers import MiniMaxH3Transformer3DModel
    from diffusers.loaders.single_file_utils import (
        convert_minimax_h3_transformer_checkpoint_to_diffusers,
    )
    from diffusers.models.transformers.transformer_minimax_h3 import MiniMaxH3RotaryPosEmbed

    from easel.models.errors import ModelError

    config = minimax_h3.transformer_config(state)
    weights = dict(state)
    table = weights.pop(minimax_h3.PRUNED_TABLE, None)
    converted = convert_minimax_h3_transformer_checkpoint_to_diffusers(weights, config)
    with torch.device("meta"):
        model = MiniMaxH3Transformer3DModel.from_config(config)
    converted = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in converted.items()
    }
    result = model.load_state_dict(converted, strict=False, assign=True)
    missing = list(result.missing_keys)
    if table is not None:  # the pruned form has no timestep MLP
        missing = [k for k in missing if not k.startswith("time_embedder.")]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"the MiniMax H3 transformer weights do not match its shape: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected (e.g. "
            f"{result.unexpected_keys[:3]})"
        )
    model.rope = MiniMaxH3RotaryPosEmbed(
        rope_freq_dim=config["rope_freq_dim"], rope_theta=model.config.rope_theta
    )
    if table is not None:
        _as_curve_form(model, table)
    if dtype != torch.float32:  # the released mixed precision (diffusers' and ComfyUI's)
        for name in KEEP_FP32:
            getattr(model, name).float()
    return model.eval().requires_grad_(False)
