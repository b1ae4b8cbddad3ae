"""CLIP vision models (ComfyUI's `clip_vision/` files): CLIP ViT image towers with their
projection (ViT-L, ViT-H, ViT-bigG: SDXL revision, unCLIP) and SigLIP towers (Flux Redux), built
with transformers from the file's shapes, and ComfyUI's CLIPVisionEncode preprocessing.

The files hold transformers' own keys (`vision_model.*`, `visual_projection.weight`), as
ComfyUI's `clip_vision.py` loads them; OpenCLIP's `visual.transformer.resblocks` layout is
refused with a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models import discovery
from easel.models.errors import ModelError

KIND = "clip_vision"
PREFIX = "vision_model."
# Attention heads are not in the weights' shapes: the released towers' widths and head counts
# (ViT-bigG 1664, ViT-H 1280, SigLIP so400m 1152, ViT-L 1024, ViT-B 768); other widths (the
# tests' tiny towers) get heads of 64 channels, or one head when narrower.
KNOWN_HEADS = {1664: 16, 1280: 16, 1152: 16, 1024: 16, 768: 12}
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
# Input sizes the position count does not give: SigLIP so400m-patch14-384 takes 384 x 384
# images, whose 27 x 27 patches of 14 leave the last 6 pixels unread (ComfyUI's and
# transformers' configs for it both say 384).
KNOWN_IMAGE_SIZES = {(729, 14): 384}


@dataclass(eq=False)
class ClipVisionHandle:
    """A CLIP_VISION handle: the transformers module (held by the model manager), whether it is
    a CLIP or a SigLIP tower, and the input size and normalisation it was trained with."""

    name: str
    path: Path
    model: Any = field(repr=False)
    kind: str  # "clip" (CLIPVisionModelWithProjection) or "siglip" (SiglipVisionModel)
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    manager: Any = field(repr=False, default=None)


@dataclass(eq=False)
class ClipVisionOutput:
    """A CLIP_VISION_OUTPUT, as ComfyUI's: `last_hidden_state` [B, tokens, width] (SigLIP's after
    its final norm, what Redux reads), `image_embeds` [B, projection] (CLIP's projected class
    token; None for SigLIP, which has no projection) and `penultimate_hidden_states`."""

    last_hidden_state: Any
    image_embeds: Any
    penultimate_hidden_states: Any
    source: str = ""  # the model's name, for messages


def _heads(width: int) -> int:
    if width in KNOWN_HEADS:
        return KNOWN_HEADS[width]
    return width // 64 if width % 64 == 0 else 1


def _layers(state: dict[str, Any]) -> int:
    found = {
        int(k[len(PREFIX + "encoder.layers.") :].split(".")[0])
        for k in state
        if k.startswith(PREFIX + "encoder.layers.")
    }
    if not found:
        raise ModelError("no encoder layers (vision_model.encoder.layers.*)")
    return max(found) + 1


def config_for(state: dict[str, Any]) -> tuple[str, Any]:
    """("clip" or "siglip", the transformers config) read from a file's tensor shapes."""
    from transformers import CLIPVisionConfig, SiglipVisionConfig

    patch = state[PREFIX + "embeddings.patch_embedding.weight"]
    width, patch_size = int(patch.shape[0]), int(patch.shape[-1])
    positions = int(state[PREFIX + "embeddings.position_embedding.weight"].shape[0])
    common: dict[str, Any] = {
        "hidden_size": width,
        "intermediate_size": int(state[PREFIX + "encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": _layers(state),
        "num_attention_heads": _heads(width),
        "patch_size": patch_size,
        "num_channels": int(patch.shape[1]),
    }
    if PREFIX + "embeddings.class_embedding" in state:
        side = round((positions - 1) ** 0.5)
        projection = state.get("visual_projection.weight")
        # OpenAI's ViT-L uses quick_gelu; the OpenCLIP-trained towers (H, bigG) use gelu
        openai_l = width == 1024 and common["num_hidden_layers"] == 24
        config = CLIPVisionConfig(
            **common,
            image_size=side * patch_size,
            projection_dim=int(projection.shape[0]) if projection is not None else width,
            hidden_act="quick_gelu" if openai_l else "gelu",
            layer_norm_eps=1e-5,
        )
        return "clip", config
    side = round(positions**0.5)
    siglip_config = SiglipVisionConfig(
        **common,
        image_size=KNOWN_IMAGE_SIZES.get((positions, patch_size), side * patch_size),
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=PREFIX + "head.probe" in state,
    )
    return "siglip", siglip_config


def build(state: dict[str, Any], dtype: Any, what: str) -> tuple[str, Any]:
    """The kind and the transformers module of a `clip_vision/` state dict."""
    import torch
    from transformers import CLIPVisionModelWithProjection, SiglipVisionModel

    if any(k.startswith("visual.transformer.resblocks.") for k in state):
        raise ModelError(
            f"{what} is in OpenCLIP's layout (visual.transformer.resblocks): Easel reads "
            "CLIP vision files in transformers' layout (vision_model.*), as ComfyUI ships them"
        )
    if PREFIX + "embeddings.patch_embedding.weight" not in state:
        first = ", ".join(list(state)[:3]) or "none"
        raise ModelError(
            f"{what} is not a CLIP or SigLIP vision model (no "
            f"vision_model.embeddings.patch_embedding.weight; first keys: {first})"
        )
    kind, config = config_for(state)
    cls = CLIPVisionModelWithProjection if kind == "clip" else SiglipVisionModel
    with torch.device("meta"):
        model = cls(config)
    expected = set(model.state_dict())
    if not any(k.startswith(PREFIX) for k in expected):
        # transformers 5 names SigLIP's tensors without the "vision_model." of the files
        state = {k.removeprefix(PREFIX): v for k, v in state.items()}
    state = {
        k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items() if k in expected
    }
    result = model.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing:
        raise ModelError(
            f"the {what} weights do not match a {kind} vision model: {len(missing)} missing "
            f"(e.g. {missing[:3]})"
        )
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:  # position ids, which the files do not hold
            owner_name, _, attr = name.rpartition(".")
            owner = model.get_submodule(owner_name) if owner_name else model
            owner.register_buffer(
                attr, torch.arange(buffer.shape[-1]).expand(buffer.shape), persistent=False
            )
    return kind, model.eval().requires_grad_(False)


def load(manager: Any, name: str) -> ClipVisionHandle:
    """The shared handle of `clip_vision/<name>`, loaded once per file version."""
    from easel.models.state_dicts import read_state_dict

    path = discovery.resolve(KIND, name, roots=manager.roots)
    stat = path.stat()
    key = (str(path.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}")

    def make() -> ClipVisionHandle:
        state = read_state_dict(path, manager.allow_unsafe_pickle)
        kind, model = build(state, manager.dtype, f"clip_vision/{name}")
        manager.load_module((key[0], "clip_vision", key[1]), lambda: model)
        size = int(model.config.image_size)
        if kind == "clip":
            return ClipVisionHandle(name, path, model, kind, size, CLIP_MEAN, CLIP_STD, manager)
        return ClipVisionHandle(name, path, model, kind, size, SIGLIP_MEAN, SIGLIP_STD, manager)

    handle: ClipVisionHandle = manager._handle(("clip_vision", *key), make)
    return handle


def preprocess(
    images: Any, size: int, mean: tuple[float, ...], std: tuple[float, ...], crop: bool
) -> Any:
    """Images [B, C, H, W] in 0..1 as the encoder's input, the way ComfyUI's CLIPVisionEncode
    prepares them: the shorter side resized to `size` (bicubic, antialiased) and the centre cut
    out (`crop`), or the whole image squeezed to size x size; rounded to 8 bits; normalised.

    Written here rather than through transformers' image processors because those resize with
    PIL on 8-bit images: ComfyUI's (and so its users') embeddings come from this torch path."""
    import torch

    images = images[:, :3].float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    height, width = images.shape[2], images.shape[3]
    if (height, width) != (size, size):
        if crop:
            scale = size / min(height, width)
            target = (round(scale * height), round(scale * width))
        else:
            target = (size, size)
        images = torch.nn.functional.interpolate(
            images, size=target, mode="bicubic", antialias=True
        )
        top, left = (images.shape[2] - size) // 2, (images.shape[3] - size) // 2
        images = images[:, :, top : top + size, left : left + size]
    images = torch.clip(255.0 * images, 0, 255).round() / 255.0
    mean_t = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def encode(handle: ClipVisionHandle, images: Any, crop: bool = True) -> ClipVisionOutput:
    """Run the vision tower on images [B, C, H, W] in 0..1 (ComfyUI's encode_image)."""
    import torch

    model = handle.manager.place(handle.model) if handle.manager is not None else handle.model
    param = next(model.parameters())
    pixels = preprocess(images, handle.image_size, handle.mean, handle.std, crop)
    with torch.inference_mode():
        out = model(
            pixel_values=pixels.to(device=param.device, dtype=param.dtype),
            output_hidden_states=True,
        )
    image_embeds = getattr(out, "image_embeds", None)
    return ClipVisionOutput(
        last_hidden_state=out.last_hidden_state.float().cpu(),
        image_embeds=image_embeds.float().cpu() if image_embeds is not None else None,
        penultimate_hidden_states=out.hidden_states[-2].float().cpu(),
        source=handle.name,
    )
