"""Read a Stable Diffusion checkpoint's hyper-parameters off its tensor shapes, in the form of
the original LDM yaml (`model.params.unet_config.params`, `first_stage_config...ddconfig`), so
that diffusers' own `create_*_diffusers_config_from_ldm` and `convert_ldm_*` functions do the
rest. Nothing about a network's size is bundled: only the rules no tensor shows (the attention
head layout of each family), as ComfyUI's model detection also has them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.base import Family
from easel.models.families.recognise import UNET_PREFIX, context_dim, shape

VAE_PREFIXES = ("first_stage_model.", "vae.")


def _indices(state: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in state if (m := regex.match(key))}
    return sorted(found)


def unet_params(state: Mapping[str, Any], family: Family) -> dict[str, Any]:
    """`unet_config.params` of the LDM yaml, read off the UNet's shapes."""
    p = UNET_PREFIX
    conv_in = shape(state, p + "input_blocks.0.0.weight")
    conv_out = shape(state, p + "out.2.weight")
    if conv_in is None or conv_out is None:
        raise ModelError("no UNet (model.diffusion_model.input_blocks / out) in the file")
    model_channels = conv_in[0]
    blocks = _indices(state, re.escape(p) + r"input_blocks\.(\d+)\.")
    levels: list[list[int]] = [[]]  # input block ids per level
    for block in blocks[1:]:
        if p + f"input_blocks.{block}.0.op.weight" in state:
            levels.append([])
        else:
            levels[-1].append(block)
    num_res = len(levels[0])
    if any(len(level) != num_res for level in levels):
        raise ModelError(
            "the UNet's levels have different numbers of blocks "
            f"({[len(level) for level in levels]}): not a Stable Diffusion UNet"
        )
    mult, depth, attention = [], [], []
    for level, ids in enumerate(levels):
        out = shape(state, p + f"input_blocks.{ids[0]}.0.out_layers.3.weight")
        if out is None:
            raise ModelError(f"UNet input block {ids[0]} has no ResBlock")
        mult.append(out[0] // model_channels)
        blocks_here = _indices(
            state, re.escape(p + f"input_blocks.{ids[0]}.1.transformer_blocks.") + r"(\d+)\."
        )
        depth.append(len(blocks_here))
        if blocks_here:
            attention.append(2**level)
    mid = _indices(state, re.escape(p + "middle_block.1.transformer_blocks.") + r"(\d+)\.")
    proj_key = next((k for k in state if k.startswith(p) and k.endswith(".proj_in.weight")), "")
    proj_in = shape(state, proj_key)
    params: dict[str, Any] = {
        "in_channels": conv_in[1],
        "out_channels": conv_out[0],
        "model_channels": model_channels,
        "channel_mult": mult,
        "num_res_blocks": num_res,
        "attention_resolutions": attention,
        # one depth everywhere is written as an int in the LDM yaml files (SD 1/2, XL refiner);
        # XL base's [0, 2, 10] as a list. diffusers' mid block takes the last level's depth.
        "transformer_depth": (
            next(iter(used)) if len(used := {d for d in depth if d}) == 1 else depth
        ),
        "transformer_depth_middle": len(mid),
        "context_dim": context_dim(state),
        "use_linear_in_transformer": proj_in is not None and len(proj_in) == 2,
    }
    if family.name.startswith("sd1"):
        params["num_heads"] = 8  # SD 1.x: 8 heads at every level
    else:
        params["num_head_channels"] = 64  # SD 2.x and XL: heads of 64 channels
    adm = shape(state, p + "label_emb.0.0.weight")
    if adm is not None:
        params["num_classes"] = "sequential"
        params["adm_in_channels"] = adm[1]
    return params


def _vae_prefix(state: Mapping[str, Any]) -> str:
    for prefix in VAE_PREFIXES:
        if prefix + "encoder.conv_in.weight" in state:
            return prefix
    if "encoder.conv_in.weight" in state:
        return ""
    raise ModelError("no VAE (first_stage_model.encoder / decoder) in the file")


def vae_ddconfig(state: Mapping[str, Any]) -> dict[str, Any]:
    """`first_stage_config.params.ddconfig` of the LDM yaml, read off the VAE's shapes."""
    p = _vae_prefix(state)
    conv_in = shape(state, p + "encoder.conv_in.weight")
    conv_out = shape(state, p + "encoder.conv_out.weight")
    dec_out = shape(state, p + "decoder.conv_out.weight")
    assert conv_in is not None and conv_out is not None and dec_out is not None
    ch = conv_in[0]
    levels = _indices(state, re.escape(p + "encoder.down.") + r"(\d+)\.")
    mult = []
    for level in levels:
        out = shape(state, p + f"encoder.down.{level}.block.0.conv2.weight")
        assert out is not None
        mult.append(out[0] // ch)
    res = _indices(state, re.escape(p + "encoder.down.0.block.") + r"(\d+)\.")
    return {
        "double_z": True,
        "z_channels": conv_out[0] // 2,
        "resolution": 256,
        "in_channels": conv_in[1],
        "out_ch": dec_out[0],
        "ch": ch,
        "ch_mult": mult,
        "num_res_blocks": len(res),
        "attn_resolutions": [],
        "dropout": 0.0,
    }


def vae_norm_groups(state: Mapping[str, Any]) -> int:
    """GroupNorm groups of the VAE: 32 in every real one; fewer only when channels are few."""
    p = _vae_prefix(state)
    ch = shape(state, p + "encoder.conv_in.weight")
    assert ch is not None
    return 32 if ch[0] % 32 == 0 else 1


def original_config(
    state: Mapping[str, Any], family: Family, has_vae: bool = True
) -> dict[str, Any]:
    """An LDM yaml as a dict, enough for diffusers' single-file config functions."""
    params: dict[str, Any] = {
        "unet_config": {"params": unet_params(state, family)},
        "scale_factor": family.latent.scaling_factor,
    }
    params["first_stage_config"] = {
        "params": {"ddconfig": vae_ddconfig(state) if has_vae else {"ch_mult": [1, 2, 4, 4]}}
    }
    return {"model": {"params": params}}
