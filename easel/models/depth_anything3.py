"""Depth Anything 3 Mono/Metric-Large (ByteDance Seed) from ComfyUI's `geometry_estimation/` files:
a DINOv2 ViT and a DPT head, the Depth Anything V2 architecture, on transformers' modules.

- **Backbone and neck** are transformers' Dinov2Backbone and DepthAnythingNeck (reassemble,
  3x3 convs, fusion blocks), loaded from the file's tensors. DA3's DINOv2 differs from
  transformers' in two numeric details, set here: the position table is resized as DINOv2's
  original code does it (bicubic with a scale factor of (n + 0.1) / M, not a target size) and
  the final LayerNorm has PyTorch's default eps (1e-5; the blocks' are 1e-6).
- **Head** (`DA3Head`, written here): transformers' depth head ends in ReLU or sigmoid and has
  no sky branch; DA3's depth is `exp` of the last conv, and a second branch from the same
  upsampled features gives the sky map (ReLU).

The file's layout is ComfyUI's (`backbone.embeddings.*`, `backbone.encoder.layer.N.*`, the
names transformers' Dinov2 also uses, and DA3's `head.*`), or DA3's own checkpoint layout
(`model.backbone.pretrained.*`, fused qkv). DA3-Small/Base/Large/Giant ("any-view": DualDPT
head, camera tokens, alternating attention) are refused.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models import discovery
from easel.models.errors import ModelError

KIND = "geometry_estimation"
PATCH = 14
OUT_LAYERS = (4, 11, 17, 23)  # DA3 Mono/Metric-Large's (24 blocks)
PRETRAIN_SIZE = 518
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FINAL_NORM_EPS = 1e-5
ANY_VIEW_KEYS = ("head.scratch.refinenet1_aux.", "cam_dec.", "backbone.embeddings.camera_token")


@dataclass(eq=False)
class Da3Handle:
    """DA3_MODEL: the network (`Da3Network`) and where it came from."""

    name: str
    network: Any
    manager: Any = field(repr=False, default=None)
    has_sky: bool = True


def names(roots: list[Path] | None = None) -> list[str]:
    return discovery.kind_names(KIND, roots=roots)


def _torch_modules() -> Any:
    import torch

    class DA3Head(torch.nn.Module):
        """DA3's DPT output head: `output_conv1`, upsampling to the patch grid x 14, then the
        depth branch (`output_conv2`, exp) and the sky branch (`sky_output_conv2`, ReLU)."""

        def __init__(self, features: int, hidden: int = 32, sky: bool = True) -> None:
            super().__init__()
            nn = torch.nn
            self.output_conv1 = nn.Conv2d(features, features // 2, 3, 1, 1)
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1)
            )
            self.sky_output_conv2 = (
                nn.Sequential(
                    nn.Conv2d(features // 2, hidden, 3, 1, 1), nn.ReLU(), nn.Conv2d(hidden, 1, 1)
                )
                if sky
                else None
            )

        def forward(self, fused: Any, height: int, width: int) -> tuple[Any, Any]:
            out = self.output_conv1(fused)
            out = torch.nn.functional.interpolate(
                out, (height, width), mode="bilinear", align_corners=True
            )
            depth = torch.exp(self.output_conv2(out)).squeeze(1)
            sky = None
            if self.sky_output_conv2 is not None:
                sky = torch.relu(self.sky_output_conv2(out)).squeeze(1)
            return depth, sky

    class Da3Network(torch.nn.Module):
        """pixels [B, 3, H, W] (ImageNet-normalised, sides multiples of 14) -> depth, sky
        [B, H, W]."""

        def __init__(self, config: Any, sky: bool) -> None:
            super().__init__()
            from transformers.backbone_utils import load_backbone
            from transformers.models.depth_anything.modeling_depth_anything import (
                DepthAnythingNeck,
            )

            self.backbone = load_backbone(config)
            self.neck = DepthAnythingNeck(config)
            self.head = DA3Head(config.fusion_hidden_size, config.head_hidden_size, sky)
            self.backbone.layernorm.eps = FINAL_NORM_EPS
            embeddings = self.backbone.embeddings
            embeddings.interpolate_pos_encoding = types.MethodType(_dinov2_positions, embeddings)

        def forward(self, pixels: Any) -> tuple[Any, Any]:
            height, width = pixels.shape[-2:]
            features = self.backbone(pixels).feature_maps
            fused = self.neck(list(features), height // PATCH, width // PATCH)
            return self.head(fused[-1], height, width)

    return DA3Head, Da3Network


def _dinov2_positions(self: Any, embeddings: Any, height: int, width: int) -> Any:
    """DINOv2's original position-table resize, which DA3 keeps: bicubic with the scale
    factor (n + 0.1) / M per axis (transformers' Dinov2 resizes to a target size instead,
    which samples other points)."""
    import torch

    table = self.position_embeddings
    patches = embeddings.shape[1] - 1
    known = table.shape[1] - 1
    if patches == known and height == width:
        return table
    rows, cols = height // PATCH, width // PATCH
    side = round(known**0.5)
    grid = table[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(
        grid,
        scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
        mode="bicubic",
        antialias=False,
    )
    if tuple(grid.shape[-2:]) != (rows, cols):
        raise ModelError(f"position table resized to {tuple(grid.shape[-2:])}, not {(rows, cols)}")
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
    return torch.cat((table[:, :1].float(), grid), dim=1).to(table.dtype)


# -- keys ----------------------------------------------------------------------------------
def _strip_model_prefix(state: Mapping[str, Any]) -> dict[str, Any]:
    if any(k.startswith("model.backbone.") for k in state):
        return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    return dict(state)


def is_da3(state: Mapping[str, Any]) -> bool:
    keys = _strip_model_prefix({k: None for k in state})
    return any(k.startswith("head.scratch.refinenet1.") for k in keys) and any(
        k.startswith("backbone.") for k in keys
    )


def _original_backbone(state: dict[str, Any]) -> dict[str, Any]:
    """DA3's own DINOv2 keys (`backbone.pretrained.*`, fused qkv) -> transformers' Dinov2."""
    out: dict[str, Any] = {}
    renames = [
        (r"cls_token$", "embeddings.cls_token"),
        (r"mask_token$", "embeddings.mask_token"),
        (r"pos_embed$", "embeddings.position_embeddings"),
        (r"patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
        (r"blocks\.(\d+)\.norm(\d)\.", r"encoder.layer.\1.norm\2."),
        (r"blocks\.(\d+)\.attn\.proj\.", r"encoder.layer.\1.attention.o_proj."),
        (r"blocks\.(\d+)\.ls(\d)\.gamma$", r"encoder.layer.\1.layer_scale\2.lambda1"),
        (r"blocks\.(\d+)\.mlp\.", r"encoder.layer.\1.mlp."),
        (r"norm\.", "layernorm."),
    ]
    for key, value in state.items():
        if not key.startswith("backbone.pretrained."):
            out[key] = value
            continue
        rest = key[len("backbone.pretrained.") :]
        qkv = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", rest)
        if qkv:
            base = f"backbone.encoder.layer.{qkv.group(1)}.attention."
            for name, part in zip(("q", "k", "v"), value.chunk(3, dim=0), strict=True):
                out[f"{base}{name}_proj.{qkv.group(2)}"] = part
            continue
        for pattern, replacement in renames:
            match = re.match(pattern, rest)
            if match:
                out["backbone." + match.expand(replacement) + rest[match.end() :]] = value
                break
        else:
            out[key] = value
    return out


# ComfyUI's DINOv2 (transformers 4's names) -> transformers 5's Dinov2 attention names
_ATTENTION = {
    "attention.query": "q_proj",
    "attention.key": "k_proj",
    "attention.value": "v_proj",
    "output.dense": "o_proj",
}


def _transformers_attention(key: str) -> str:
    match = re.match(
        r"(backbone\.encoder\.layer\.\d+\.attention\.)"
        r"(attention\.query|attention\.key|attention\.value|output\.dense)(\..*)",
        key,
    )
    if match is None:
        return key
    return match.group(1) + _ATTENTION[match.group(2)] + match.group(3)


def convert(state: Mapping[str, Any]) -> dict[str, Any]:
    """A DA3 file's tensors -> Da3Network's state dict (keys `backbone.`, `neck.`, `head.`)."""
    state = _original_backbone(_strip_model_prefix(state))
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key.startswith("backbone."):
            out[_transformers_attention(key)] = value
            continue
        if not key.startswith("head."):
            continue
        rest = key[len("head.") :]
        if m := re.match(r"projects\.(\d)\.", rest):
            new = f"neck.reassemble_stage.layers.{m.group(1)}.projection."
        elif m := re.match(r"resize_layers\.(\d)\.", rest):
            new = f"neck.reassemble_stage.layers.{m.group(1)}.resize."
        elif m := re.match(r"scratch\.layer(\d)_rn\.", rest):
            new = f"neck.convs.{int(m.group(1)) - 1}."
        elif m := re.match(r"scratch\.refinenet(\d)\.out_conv\.", rest):
            new = f"neck.fusion_stage.layers.{4 - int(m.group(1))}.projection."
        elif m := re.match(r"scratch\.refinenet(\d)\.resConfUnit(\d)\.conv(\d)\.", rest):
            layer = 4 - int(m.group(1))
            new = (
                f"neck.fusion_stage.layers.{layer}.residual_layer{m.group(2)}."
                f"convolution{m.group(3)}."
            )
        elif m := re.match(r"scratch\.(output_conv1|output_conv2|sky_output_conv2)\.", rest):
            new = f"head.{m.group(1)}."
        else:
            continue
        out[new + rest[m.end() :]] = value
    return out


def network_config(state: Mapping[str, Any]) -> Any:
    """transformers DepthAnythingConfig (Dinov2 backbone) from the converted shapes."""
    from transformers import DepthAnythingConfig, Dinov2Config

    hidden = int(state["backbone.embeddings.patch_embeddings.projection.weight"].shape[0])
    depth = 1 + max(
        int(m.group(1)) for k in state if (m := re.match(r"backbone\.encoder\.layer\.(\d+)\.", k))
    )
    if depth != 24:
        raise ModelError(
            f"a {depth}-block DINOv2: Easel loads DA3 Mono-Large and Metric-Large (24 blocks)"
        )
    positions = int(state["backbone.embeddings.position_embeddings"].shape[1]) - 1
    channels = [
        int(state[f"neck.reassemble_stage.layers.{i}.projection.weight"].shape[0])
        for i in range(4)
    ]
    features = int(state["neck.convs.0.weight"].shape[0])
    backbone = Dinov2Config(  # type: ignore[call-arg]  # out_indices: a backbone property
        hidden_size=hidden,
        num_hidden_layers=depth,
        num_attention_heads=max(1, hidden // 64),
        mlp_ratio=int(state["backbone.encoder.layer.0.mlp.fc1.weight"].shape[0]) // hidden,
        image_size=round(positions**0.5) * PATCH,
        patch_size=PATCH,
        layer_norm_eps=1e-6,
        layerscale_value=1.0,
        out_indices=[i + 1 for i in OUT_LAYERS],
        apply_layernorm=True,
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=PATCH,
        reassemble_hidden_size=hidden,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=channels,
        fusion_hidden_size=features,
        head_hidden_size=int(state["head.output_conv2.0.weight"].shape[0]),
    )


def build(state: Mapping[str, Any], source: str) -> tuple[Any, bool]:
    """(Da3Network in eval mode, float32; whether it has the sky branch)."""
    import torch

    keys = _strip_model_prefix({k: None for k in state})
    if any(k.startswith(ANY_VIEW_KEYS) for k in keys):
        raise ModelError(
            f"{source} is an any-view DA3 model (DualDPT head, camera tokens: DA3 Small, Base, "
            "Large, Giant); Easel loads DA3 Mono-Large and Metric-Large"
        )
    converted = convert(state)
    try:
        config = network_config(converted)
    except KeyError as exc:
        raise ModelError(f"{source}: not a complete DA3 model (no tensor for {exc})") from exc
    sky = any(k.startswith("head.sky_output_conv2.") for k in converted)
    from accelerate import init_empty_weights

    _, network_class = _torch_modules()
    with init_empty_weights(include_buffers=False):  # assigned from the file below
        network = network_class(config, sky)
    expected = network.state_dict()
    # parameters DA3 has no use for: DINOv2's mask token, the first fusion block's residual
    # unit (it has no skip input)
    for key in ("backbone.embeddings.mask_token", *_unused_residual(expected)):
        converted.setdefault(key, torch.zeros(expected[key].shape))
    missing = [k for k in expected if k not in converted]
    unexpected = [k for k in converted if k not in expected]
    if missing or unexpected:
        raise ModelError(
            f"{source}: the tensors do not match DA3 Mono/Metric-Large (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]})"
        )
    for key, value in converted.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"{source}: {key} has shape {tuple(value.shape)}, expected "
                f"{tuple(expected[key].shape)}"
            )
    network.load_state_dict({k: v.float() for k, v in converted.items()}, assign=True)
    for name, param in network.named_parameters():
        if param.is_meta:
            raise ModelError(f"{source}: no value for {name}")
    return network.eval(), sky


def _unused_residual(expected: Mapping[str, Any]) -> list[str]:
    return [k for k in expected if k.startswith("neck.fusion_stage.layers.0.residual_layer1.")]


DTYPES = {"default": "float32", "fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def load(manager: Any, name: str, weight_dtype: str = "default") -> Da3Handle:
    """The shared handle of `geometry_estimation/<name>` in `weight_dtype` (ComfyUI's choices;
    default is float32), loaded once per file version and dtype."""
    import torch

    from easel.models.state_dicts import read_state_dict

    if weight_dtype not in DTYPES:
        raise ModelError(f"weight_dtype {weight_dtype!r}: one of {', '.join(DTYPES)}")
    dtype = getattr(torch, DTYPES[weight_dtype])
    path = discovery.resolve(KIND, name, roots=manager.roots)
    stat = path.stat()
    key = (str(path.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}", DTYPES[weight_dtype])

    def make() -> Da3Handle:
        state = read_state_dict(path, allow_pickle=manager.allow_unsafe_pickle)
        if not is_da3(state):
            raise ModelError(f"{path.name} is not a Depth Anything 3 model (no DPT head tensors)")
        network, sky = build(state, path.name)
        network.to(dtype)
        manager.load_module((key[0], "depth_anything_3", *key[1:]), lambda: network)
        return Da3Handle(name, network, manager, sky)

    handle: Da3Handle = manager._handle(("depth_anything_3", *key), make)
    return handle


def run(handle: Da3Handle, pixels: Any) -> tuple[Any, Any]:
    """depth and sky [B, h, w] (sky None without the branch) of normalised `pixels`."""
    import torch

    network = handle.network
    if handle.manager is not None and hasattr(handle.manager, "place"):
        handle.manager.place(network)
    weight = next(network.parameters())
    with torch.no_grad():
        depth, sky = network(pixels.to(device=weight.device, dtype=weight.dtype))
    return depth.float().cpu(), None if sky is None else sky.float().cpu()
