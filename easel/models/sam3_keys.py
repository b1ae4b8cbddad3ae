"""SAM 3 / SAM 3.1 checkpoint keys (Meta's layout, which ComfyUI's `sam3*.safetensors` files keep)
-> the keys of transformers' Sam3Model (detector and CLIP text tower) and of the SAM prompt
encoder / mask decoder of transformers' Sam3TrackerModel (the heads SAM3_Detect refines with).

transformers ships no converter in its wheel (its repository's `convert_sam3_to_hf.py` works on
Meta's `.pt` files), so the renames are written here as a table: a regular expression per
module and a split of the fused attention projections (`qkv`, `in_proj_*`). `to_original` is
the inverse, for the tests' fixtures.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DETECTOR = "detector."
# A SAM 3.1 ("multiplex") checkpoint has a third FPN for its propagation tracker.
SAM31_KEY = "detector.backbone.vision_backbone.propagation_convs.0.conv_1x1.weight"
RECOGNISE_KEYS = (
    "detector.backbone.vision_backbone.trunk.blocks.0.attn.qkv.weight",
    "detector.transformer.decoder.query_embed.weight",
)

_FPN = [
    (r"dconv_2x2_0\.", "scale_layers.0."),
    (r"dconv_2x2_1\.", "scale_layers.2."),
    (r"dconv_2x2\.", "scale_layers.0."),
    (r"conv_1x1\.", "proj1."),
    (r"conv_3x3\.", "proj2."),
]

# (original key relative to `detector.`, transformers Sam3Model key); first match wins
_DETECTOR_RULES: list[tuple[str, str]] = [
    # ViT trunk
    (
        r"backbone\.vision_backbone\.trunk\.pos_embed$",
        "vision_encoder.backbone.embeddings.position_embeddings",
    ),
    (
        r"backbone\.vision_backbone\.trunk\.patch_embed\.proj\.",
        "vision_encoder.backbone.embeddings.patch_embeddings.projection.",
    ),
    (r"backbone\.vision_backbone\.trunk\.ln_pre\.", "vision_encoder.backbone.layer_norm."),
    (
        r"backbone\.vision_backbone\.trunk\.blocks\.(\d+)\.norm(\d)\.",
        r"vision_encoder.backbone.layers.\1.layer_norm\2.",
    ),
    (
        r"backbone\.vision_backbone\.trunk\.blocks\.(\d+)\.attn\.qkv\.",
        r"vision_encoder.backbone.layers.\1.attention.qkv.",
    ),
    (
        r"backbone\.vision_backbone\.trunk\.blocks\.(\d+)\.attn\.proj\.",
        r"vision_encoder.backbone.layers.\1.attention.o_proj.",
    ),
    (
        r"backbone\.vision_backbone\.trunk\.blocks\.(\d+)\.mlp\.",
        r"vision_encoder.backbone.layers.\1.mlp.",
    ),
    # detector FPN
    (r"backbone\.vision_backbone\.convs\.(\d+)\.", r"vision_encoder.neck.fpn_layers.\1."),
    # CLIP text tower (open_clip layout) and its resizer to the detector's width
    (
        r"backbone\.language_backbone\.encoder\.token_embedding\.",
        "text_encoder.text_model.embeddings.token_embedding.",
    ),
    (
        r"backbone\.language_backbone\.encoder\.positional_embedding$",
        "text_encoder.text_model.embeddings.position_embedding.weight",
    ),
    (
        r"backbone\.language_backbone\.encoder\.ln_final\.",
        "text_encoder.text_model.final_layer_norm.",
    ),
    (
        r"backbone\.language_backbone\.encoder\.text_projection$",
        "text_encoder.text_projection.weight",
    ),
    (
        r"backbone\.language_backbone\.encoder\.transformer\.resblocks\.(\d+)\.attn\.in_proj_",
        r"text_encoder.text_model.encoder.layers.\1.self_attn.in_proj_",
    ),
    (
        r"backbone\.language_backbone\.encoder\.transformer\.resblocks\.(\d+)\.attn\.out_proj\.",
        r"text_encoder.text_model.encoder.layers.\1.self_attn.out_proj.",
    ),
    (
        r"backbone\.language_backbone\.encoder\.transformer\.resblocks\.(\d+)\.ln_(\d)\.",
        r"text_encoder.text_model.encoder.layers.\1.layer_norm\2.",
    ),
    (
        r"backbone\.language_backbone\.encoder\.transformer\.resblocks\.(\d+)\.mlp\.c_fc\.",
        r"text_encoder.text_model.encoder.layers.\1.mlp.fc1.",
    ),
    (
        r"backbone\.language_backbone\.encoder\.transformer\.resblocks\.(\d+)\.mlp\.c_proj\.",
        r"text_encoder.text_model.encoder.layers.\1.mlp.fc2.",
    ),
    (r"backbone\.language_backbone\.resizer\.", "text_projection."),
    # geometry encoder (box prompts)
    (
        r"geometry_encoder\.encode\.(\d+)\.cross_attn_image\.",
        r"geometry_encoder.layers.\1.cross_attn.",
    ),
    (r"geometry_encoder\.encode\.(\d+)\.linear(\d)\.", r"geometry_encoder.layers.\1.mlp.fc\2."),
    (r"geometry_encoder\.encode\.(\d+)\.norm(\d)\.", r"geometry_encoder.layers.\1.layer_norm\2."),
    (r"geometry_encoder\.encode\.(\d+)\.", r"geometry_encoder.layers.\1."),
    (r"geometry_encoder\.img_pre_norm\.", "geometry_encoder.vision_layer_norm."),
    (r"geometry_encoder\.norm\.", "geometry_encoder.prompt_layer_norm."),
    (r"geometry_encoder\.encode_norm\.", "geometry_encoder.output_layer_norm."),
    (r"geometry_encoder\.(boxes_\w+|label_embed|cls_embed|final_proj)\.", r"geometry_encoder.\1."),
    # DETR encoder
    (
        r"transformer\.encoder\.layers\.(\d+)\.cross_attn_image\.",
        r"detr_encoder.layers.\1.cross_attn.",
    ),
    (r"transformer\.encoder\.layers\.(\d+)\.linear(\d)\.", r"detr_encoder.layers.\1.mlp.fc\2."),
    (r"transformer\.encoder\.layers\.(\d+)\.norm(\d)\.", r"detr_encoder.layers.\1.layer_norm\2."),
    (r"transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"detr_encoder.layers.\1.self_attn."),
    # DETR decoder
    (r"transformer\.decoder\.(query_embed|reference_points|presence_token)\.", r"detr_decoder.\1."),
    (
        r"transformer\.decoder\.presence_token_head\.layers\.(\d)\.",
        r"detr_decoder.presence_head.layer<\1>.",
    ),
    (r"transformer\.decoder\.presence_token_out_norm\.", "detr_decoder.presence_layer_norm."),
    (r"transformer\.decoder\.norm\.", "detr_decoder.output_layer_norm."),
    (r"transformer\.decoder\.bbox_embed\.layers\.(\d)\.", r"detr_decoder.box_head.layer<\1>."),
    (
        r"transformer\.decoder\.ref_point_head\.layers\.(\d)\.",
        r"detr_decoder.ref_point_head.layer<\1>.",
    ),
    (
        r"transformer\.decoder\.boxRPB_embed_(x|y)\.layers\.(\d)\.",
        r"detr_decoder.box_rpb_embed_\1.layer<\2>.",
    ),
    (r"transformer\.decoder\.layers\.(\d+)\.self_attn\.", r"detr_decoder.layers.\1.self_attn."),
    (r"transformer\.decoder\.layers\.(\d+)\.ca_text\.", r"detr_decoder.layers.\1.text_cross_attn."),
    (
        r"transformer\.decoder\.layers\.(\d+)\.cross_attn\.",
        r"detr_decoder.layers.\1.vision_cross_attn.",
    ),
    (r"transformer\.decoder\.layers\.(\d+)\.linear(\d)\.", r"detr_decoder.layers.\1.mlp.fc\2."),
    (
        r"transformer\.decoder\.layers\.(\d+)\.norm1\.",
        r"detr_decoder.layers.\1.vision_cross_attn_layer_norm.",
    ),
    (
        r"transformer\.decoder\.layers\.(\d+)\.catext_norm\.",
        r"detr_decoder.layers.\1.text_cross_attn_layer_norm.",
    ),
    (
        r"transformer\.decoder\.layers\.(\d+)\.norm2\.",
        r"detr_decoder.layers.\1.self_attn_layer_norm.",
    ),
    (r"transformer\.decoder\.layers\.(\d+)\.norm3\.", r"detr_decoder.layers.\1.mlp_layer_norm."),
    # scoring
    (r"dot_prod_scoring\.prompt_mlp\.layers\.(\d)\.", r"dot_product_scoring.text_mlp.layer<\1>."),
    (r"dot_prod_scoring\.prompt_mlp\.out_norm\.", "dot_product_scoring.text_mlp_out_norm."),
    (r"dot_prod_scoring\.prompt_proj\.", "dot_product_scoring.text_proj."),
    (r"dot_prod_scoring\.hs_proj\.", "dot_product_scoring.query_proj."),
    # segmentation head
    (r"segmentation_head\.pixel_decoder\.(conv_layers|norms)\.", r"mask_decoder.pixel_decoder.\1."),
    (
        r"segmentation_head\.mask_predictor\.mask_embed\.layers\.",
        "mask_decoder.mask_embedder.layers.",
    ),
    (r"segmentation_head\.instance_seg_head\.", "mask_decoder.instance_projection."),
    (r"segmentation_head\.semantic_seg_head\.", "mask_decoder.semantic_projection."),
    (r"segmentation_head\.cross_attend_prompt\.", "mask_decoder.prompt_cross_attn."),
    (r"segmentation_head\.cross_attn_norm\.", "mask_decoder.prompt_cross_attn_norm."),
]

# SAM prompt encoder + mask decoder (relative to the tracker's heads) -> Sam3TrackerModel keys
_HEAD_RULES: list[tuple[str, str]] = [
    (
        r"PE\.pe_layer\.positional_encoding_gaussian_matrix$",
        "prompt_encoder.shared_embedding.positional_embedding",
    ),
    (r"PE\.point_embeddings\.(\d)\.weight$", r"prompt_encoder.point_embed.<\1>"),
    (r"PE\.(not_a_point_embed|no_mask_embed)\.", r"prompt_encoder.\1."),
    (r"PE\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
    (r"PE\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
    (r"PE\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
    (r"PE\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
    (r"PE\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
    (
        r"MD\.transformer\.layers\.(\d+)\.norm(\d)\.",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.",
    ),
    (
        r"MD\.transformer\.layers\.(\d+)\.mlp\.(?:layers\.0|0)\.",
        r"mask_decoder.transformer.layers.\1.mlp.proj_in.",
    ),
    (
        r"MD\.transformer\.layers\.(\d+)\.mlp\.(?:layers\.1|2)\.",
        r"mask_decoder.transformer.layers.\1.mlp.proj_out.",
    ),
    (
        r"MD\.transformer\.layers\.(\d+)\.(\w+)\.out_proj\.",
        r"mask_decoder.transformer.layers.\1.\2.o_proj.",
    ),
    (
        r"MD\.transformer\.layers\.(\d+)\.(\w+)\.(q|k|v)_proj\.",
        r"mask_decoder.transformer.layers.\1.\2.\3_proj.",
    ),
    (
        r"MD\.transformer\.final_attn_token_to_image\.out_proj\.",
        "mask_decoder.transformer.final_attn_token_to_image.o_proj.",
    ),
    (
        r"MD\.transformer\.final_attn_token_to_image\.",
        "mask_decoder.transformer.final_attn_token_to_image.",
    ),
    (r"MD\.transformer\.norm_final(?:_attn)?\.", "mask_decoder.transformer.layer_norm_final_attn."),
    (r"MD\.(iou_token|mask_tokens|obj_score_token|conv_s0|conv_s1)\.", r"mask_decoder.\1."),
    (r"MD\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
    (r"MD\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
    (r"MD\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    (
        r"MD\.output_hypernetworks_mlps\.(\d+)\.layers\.(\d)\.",
        r"mask_decoder.output_hypernetworks_mlps.\1.<ffn\2>.",
    ),
    (r"MD\.(iou_prediction_head|pred_obj_score_head)\.layers\.(\d)\.", r"mask_decoder.\1.<ffn\2>."),
]
# transformers' 3-layer MLPs: `layer1..3` (Sam3DecoderMLP) or proj_in / layers.0 / proj_out
_FFN3 = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}


def _apply(rules: list[tuple[str, str]], key: str) -> str | None:
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match is None:
            continue
        new = match.expand(replacement) + key[match.end() :]
        new = re.sub(r"<ffn(\d)>", lambda m: _FFN3[m.group(1)], new)
        new = re.sub(r"layer<(\d)>", lambda m: f"layer{int(m.group(1)) + 1}", new)
        return new
    return None


def _split_fused(state: dict[str, Any]) -> dict[str, Any]:
    """`qkv.*` and `in_proj_*` (fused q, k, v rows) -> `q_proj.*`, `k_proj.*`, `v_proj.*`."""
    out: dict[str, Any] = {}
    for key, value in state.items():
        match = re.search(r"(?:\.qkv\.(weight|bias)|\.in_proj_(weight|bias))$", key)
        if match is None:
            out[key] = value
            continue
        kind = match.group(1) or match.group(2)
        base = key[: match.start()]
        for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
            out[f"{base}.{name}_proj.{kind}"] = part
    return out


def is_sam31(state: Mapping[str, Any]) -> bool:
    return SAM31_KEY in state


def detector_state(state: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """transformers Sam3Model's state dict from a checkpoint's `detector.*` tensors, and the
    detector keys no rule maps (SAM 3.1's other FPNs, the point-prompt projections)."""
    converted: dict[str, Any] = {}
    unmapped: list[str] = []
    for key, value in state.items():
        if not key.startswith(DETECTOR):
            continue
        new = _apply(_DETECTOR_RULES, key[len(DETECTOR) :])
        if new is None:
            unmapped.append(key)
            continue
        if new.startswith("vision_encoder.neck.fpn_layers."):
            head, _, tail = new.partition(".fpn_layers.")
            level, _, rest = tail.partition(".")
            renamed = _apply(_FPN, rest)
            if renamed is None:
                unmapped.append(key)
                continue
            new = f"{head}.fpn_layers.{level}.{renamed}"
        elif not new.startswith("text_encoder."):
            new = new.replace(".out_proj.", ".o_proj.")  # Sam3Attention names it o_proj
        if new.endswith("position_embeddings"):
            value = value[:, 1:]  # Meta's table has a class-token row the ViT never uses
        elif new == "text_encoder.text_projection.weight":
            value = value.t()  # open_clip stores x @ P; a Linear holds P transposed
        converted[new] = value
    return _split_fused(converted), unmapped


def tracker_neck_state(state: Mapping[str, Any], sam31: bool) -> dict[str, Any]:
    """A Sam3VisionNeck's state dict from the FPN the interactive SAM heads read: SAM 3's
    `sam2_convs`, SAM 3.1's `interactive_convs`."""
    name = "interactive_convs" if sam31 else "sam2_convs"
    prefix = f"detector.backbone.vision_backbone.{name}."
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            level, _, tail = rest.partition(".")
            if int(level) >= 3:
                continue  # SAM 3's 1/2-scale level, which the SAM heads never read
            new = _apply([(pattern, repl) for pattern, repl in _FPN], tail)
            if new is not None:
                out[f"fpn_layers.{level}.{new}"] = value
    return out


def head_prefixes(state: Mapping[str, Any], sam31: bool) -> tuple[str, str, str] | None:
    """(prompt encoder prefix, mask decoder prefix, no-memory embedding key) of the SAM heads
    in `state`, or None when the file has no tracker."""
    names = (
        (
            "interactive_sam_prompt_encoder.",
            "interactive_sam_mask_decoder.",
            "interactivity_no_mem_embed",
        )
        if sam31
        else ("sam_prompt_encoder.", "sam_mask_decoder.", "no_mem_embed")
    )
    for root in ("tracker.", "tracker.model."):
        if any(k.startswith(root + names[0]) for k in state):
            return root + names[0], root + names[1], root + names[2]
    return None


def head_state(state: Mapping[str, Any], prefixes: tuple[str, str, str]) -> dict[str, Any]:
    """Sam3TrackerModel's prompt encoder, mask decoder and `no_memory_embedding` tensors."""
    import torch

    encoder, decoder, no_mem = prefixes
    out: dict[str, Any] = {}
    points: dict[int, Any] = {}
    for key, value in state.items():
        if key.startswith(encoder):
            tagged = "PE." + key[len(encoder) :]
        elif key.startswith(decoder):
            tagged = "MD." + key[len(decoder) :]
        else:
            continue
        new = _apply(_HEAD_RULES, tagged)
        if new is None:
            continue
        point = re.fullmatch(r"prompt_encoder\.point_embed\.<(\d)>", new)
        if point:
            points[int(point.group(1))] = value
        else:
            out[new] = value
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.cat(
            [points[i] for i in sorted(points)], dim=0
        )
    if "prompt_encoder.shared_embedding.positional_embedding" in out:
        out["shared_image_embedding.positional_embedding"] = out[
            "prompt_encoder.shared_embedding.positional_embedding"
        ]
    out["no_memory_embedding"] = state[no_mem].reshape(1, 1, -1)
    return out
