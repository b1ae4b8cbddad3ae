"""HunyuanVideo 1.5's original key layout (Tencent's checkpoints, kept by ComfyUI's repackaged
`diffusion_models/` and `vae/` files) renamed to diffusers' HunyuanVideo15Transformer3DModel and
AutoencoderKLHunyuanVideo15 keys.

diffusers 0.42 ships no single-file converter for HunyuanVideo 1.5 (its
scripts/convert_hunyuan_video1_5_to_diffusers.py is not part of the package), so the renames
are written here as tables of the same correspondences that script makes: q/k/v kept apart (or
split when fused), the final layer's (shift, scale) modulation swapped to diffusers'
(scale, shift).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# (original, diffusers) name pieces, tried in order on the text after the block prefix
REFINER = (
    ("norm1.", "norm1."),
    ("norm2.", "norm2."),
    ("self_attn_proj.", "attn.to_out.0."),
    ("mlp.fc1.", "ff.net.0.proj."),
    ("mlp.fc2.", "ff.net.2."),
    ("adaLN_modulation.1.", "norm_out.linear."),
)
DOUBLE = (
    ("img_mod.linear.", "norm1.linear."),
    ("txt_mod.linear.", "norm1_context.linear."),
    ("img_attn_q.", "attn.to_q."),
    ("img_attn_k.", "attn.to_k."),
    ("img_attn_v.", "attn.to_v."),
    ("img_attn_q_norm.", "attn.norm_q."),
    ("img_attn_k_norm.", "attn.norm_k."),
    ("img_attn_proj.", "attn.to_out.0."),
    ("txt_attn_q.", "attn.add_q_proj."),
    ("txt_attn_k.", "attn.add_k_proj."),
    ("txt_attn_v.", "attn.add_v_proj."),
    ("txt_attn_q_norm.", "attn.norm_added_q."),
    ("txt_attn_k_norm.", "attn.norm_added_k."),
    ("txt_attn_proj.", "attn.to_add_out."),
    ("img_mlp.fc1.", "ff.net.0.proj."),
    ("img_mlp.fc2.", "ff.net.2."),
    ("txt_mlp.fc1.", "ff_context.net.0.proj."),
    ("txt_mlp.fc2.", "ff_context.net.2."),
)
TOP = (
    ("time_in.mlp.0.", "time_embed.timestep_embedder.linear_1."),
    ("time_in.mlp.2.", "time_embed.timestep_embedder.linear_2."),
    ("time_r_in.mlp.0.", "time_embed.timestep_embedder_r.linear_1."),
    ("time_r_in.mlp.2.", "time_embed.timestep_embedder_r.linear_2."),
    ("txt_in.t_embedder.mlp.0.", "context_embedder.time_text_embed.timestep_embedder.linear_1."),
    ("txt_in.t_embedder.mlp.2.", "context_embedder.time_text_embed.timestep_embedder.linear_2."),
    ("txt_in.c_embedder.linear_1.", "context_embedder.time_text_embed.text_embedder.linear_1."),
    ("txt_in.c_embedder.linear_2.", "context_embedder.time_text_embed.text_embedder.linear_2."),
    ("txt_in.input_embedder.", "context_embedder.proj_in."),
    ("byt5_in.layernorm.", "context_embedder_2.norm."),
    ("byt5_in.fc1.", "context_embedder_2.linear_1."),
    ("byt5_in.fc2.", "context_embedder_2.linear_2."),
    ("byt5_in.fc3.", "context_embedder_2.linear_3."),
    ("vision_in.proj.0.", "image_embedder.norm_in."),
    ("vision_in.proj.1.", "image_embedder.linear_1."),
    ("vision_in.proj.3.", "image_embedder.linear_2."),
    ("vision_in.proj.4.", "image_embedder.norm_out."),
    ("img_in.proj.", "x_embedder.proj."),
    ("cond_type_embedding.", "cond_type_embed."),
    ("final_layer.linear.", "proj_out."),
    ("final_layer.adaLN_modulation.1.", "norm_out.linear."),
)
FUSED = {"img_attn_qkv.": "attn.to_{}.", "txt_attn_qkv.": "attn.add_{}_proj."}
# ComfyUI's own module names (its HunyuanVideo model, Flux's blocks), should a file hold them:
# the reverse of the renames ComfyUI applies to Tencent's keys when it loads them
COMFY_NAMES = (
    ("_mod.lin.", "_mod.linear."),
    ("_attn.qkv.", "_attn_qkv."),
    ("_attn.norm.query_norm.scale", "_attn_q_norm.weight"),
    ("_attn.norm.key_norm.scale", "_attn_k_norm.weight"),
    ("_attn.proj.", "_attn_proj."),
    ("_mlp.0.", "_mlp.fc1."),
    ("_mlp.2.", "_mlp.fc2."),
    ("self_attn.qkv.", "self_attn_qkv."),
    ("self_attn.proj.", "self_attn_proj."),
    (".mlp.0.", ".mlp.fc1."),
    (".mlp.2.", ".mlp.fc2."),
    ("_in.in_layer.", "_in.mlp.0."),
    ("_in.out_layer.", "_in.mlp.2."),
    ("t_embedder.in_layer.", "t_embedder.mlp.0."),
    ("t_embedder.out_layer.", "t_embedder.mlp.2."),
    ("c_embedder.in_layer.", "c_embedder.linear_1."),
    ("c_embedder.out_layer.", "c_embedder.linear_2."),
)


def original_names(state: Mapping[str, Any]) -> dict[str, Any]:
    """`state` with ComfyUI's module names (`img_mod.lin`, `img_attn.qkv`, `img_mlp.0`,
    `time_in.in_layer`) turned back into Tencent's; Tencent's names pass unchanged."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for old, original in COMFY_NAMES:
            if old.startswith(".mlp.") and "individual_token_refiner" not in new:
                continue  # the refiner's MLP only; the double blocks' are img_mlp / txt_mlp
            new = new.replace(old, original)
        out[new] = value
    return out


def _rename(rest: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for old, new in table:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return None


def transformer_to_diffusers(state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Original HunyuanVideo 1.5 transformer keys (under `prefix`) -> diffusers' keys. A key
    that has no diffusers counterpart raises KeyError naming it."""
    import torch

    out: dict[str, Any] = {}
    unprefixed = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    for name, value in original_names(unprefixed).items():
        key = prefix + name
        refiner = re.match(r"txt_in\.individual_token_refiner\.blocks\.(\d+)\.(.*)", name)
        double = re.match(r"double_blocks\.(\d+)\.(.*)", name)
        if refiner:
            head = f"context_embedder.token_refiner.refiner_blocks.{refiner.group(1)}."
            rest = refiner.group(2)
            if rest.startswith("self_attn_qkv."):
                tail = rest[len("self_attn_qkv.") :]
                for letter, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{head}attn.to_{letter}.{tail}"] = part
                continue
            renamed = _rename(rest, REFINER)
        elif double:
            head = f"transformer_blocks.{double.group(1)}."
            rest = double.group(2)
            fused = next((f for f in FUSED if rest.startswith(f)), None)
            if fused is not None:
                tail = rest[len(fused) :]
                for letter, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[head + FUSED[fused].format(letter) + tail] = part
                continue
            renamed = _rename(rest, DOUBLE)
        else:
            head, renamed = "", _rename(name, TOP)
            if name.startswith("final_layer.adaLN_modulation.1."):
                shift, scale = value.chunk(2, dim=0)
                value = torch.cat([scale, shift], dim=0)
        if renamed is None:
            raise KeyError(f"{key} has no place in diffusers' HunyuanVideo15Transformer3DModel")
        out[head + renamed] = value
    return out


VAE = (
    (r"(encoder|decoder)\.down\.(\d+)\.block\.(\d+)\.", r"\1.down_blocks.\2.resnets.\3."),
    (r"(encoder|decoder)\.up\.(\d+)\.block\.(\d+)\.", r"\1.up_blocks.\2.resnets.\3."),
    (r"encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
    (r"decoder\.up\.(\d+)\.upsample\.", r"decoder.up_blocks.\1.upsamplers.0."),
    (r"(encoder|decoder)\.mid\.block_1\.", r"\1.mid_block.resnets.0."),
    (r"(encoder|decoder)\.mid\.block_2\.", r"\1.mid_block.resnets.1."),
    (r"(encoder|decoder)\.mid\.attn_1\.(q|k|v)\.", r"\1.mid_block.attentions.0.to_\2."),
    (r"(encoder|decoder)\.mid\.attn_1\.", r"\1.mid_block.attentions.0."),
    (r"\.nin_shortcut\.", ".conv_shortcut."),
)


def vae_to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """Original HunyuanVideo 1.5 VAE keys (`encoder.down.N.block.M.*`, `mid.attn_1.q`) ->
    AutoencoderKLHunyuanVideo15's (`encoder.down_blocks.N.resnets.M.*`, `to_q`)."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        new = key
        for pattern, replacement in VAE:
            new = re.sub(pattern, replacement, new)
        out[new] = value
    return out
