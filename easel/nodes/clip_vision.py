"""CLIP vision nodes: CLIPVisionLoader, CLIPVisionEncode and unCLIPConditioning (SDXL revision:
image embeddings in place of the pooled text embedding), ComfyUI's nodes of those names."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import ClipVision, ClipVisionOutput, Conditioning, Image
from easel.nodes.model_access import discovered, manager, model_errors

CROPS = ("center", "none")


def _fingerprint(kind: str) -> Any:
    """The model file's size and time: a replaced file reloads."""

    def fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
        from easel.models import discovery
        from easel.models.errors import ModelError

        models = ctx.services.get("models")
        roots = list(models.roots) if models is not None else None
        try:
            path = discovery.resolve(kind, str(inputs.get("name", "")), roots=roots)
        except ModelError:
            return "missing"
        stat = path.stat()
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    return fingerprint


@node(
    category="loaders",
    outputs={"clip_vision": ClipVision},
    fingerprint=_fingerprint("clip_vision"),
)
def CLIPVisionLoader(ctx: Context, name: str = Input(choices=discovered("clip_vision"))) -> Any:
    """Load an image encoder from `clip_vision/`: a CLIP vision tower with its projection
    (ViT-L, ViT-H, ViT-bigG `clip_vision_g`: unCLIPConditioning) or a SigLIP tower
    (`sigclip_vision_patch14_384`: Flux Redux through StyleModelApply)."""
    from easel.models import clip_vision

    with model_errors("name"):
        return {"clip_vision": clip_vision.load(manager(ctx), name)}


@node(category="conditioning", outputs={"clip_vision_output": ClipVisionOutput})
def CLIPVisionEncode(
    clip_vision: ClipVision, image: Image, crop: str = Input("center", choices=CROPS)
) -> Any:
    """Encode images with a CLIP vision model, prepared as ComfyUI does: `center` scales the
    shorter side to the model's size and keeps the centre, `none` squeezes the whole image."""
    from easel.models import clip_vision as lib

    if getattr(image, "ndim", 0) != 4:
        raise NodeError("expected images [B, C, H, W]", "image")
    with model_errors("clip_vision"):
        return {"clip_vision_output": lib.encode(clip_vision, image, crop=crop == "center")}


@node(category="conditioning", outputs={"conditioning": Conditioning})
def unCLIPConditioning(
    conditioning: Conditioning,
    clip_vision_output: ClipVisionOutput,
    strength: float = Input(1.0, ge=-10.0, le=10.0, step=0.01),
    noise_augmentation: float = Input(0.0, ge=0.0, le=1.0, step=0.01),
) -> Any:
    """Condition an SDXL model on an image (revision): the image's CLIP-G embedding, noised by
    `noise_augmentation` and scaled by `strength`, replaces the prompt's pooled embedding;
    several of these nodes in a chain mix their images. The prompt's token embeddings stay."""
    embeds = getattr(clip_vision_output, "image_embeds", None)
    if embeds is None:
        raise NodeError(
            f"{getattr(clip_vision_output, 'source', 'this model')} gives no projected image "
            "embedding (a SigLIP tower): unCLIPConditioning needs a CLIP vision model with a "
            "projection, such as clip_vision_g",
            "clip_vision_output",
        )
    if strength == 0:
        return {"conditioning": conditioning}
    entry = {
        "image_embeds": embeds,
        "strength": strength,
        "noise_augmentation": noise_augmentation,
    }
    return {"conditioning": {**conditioning, "unclip": [*conditioning.get("unclip", ()), entry]}}


NODES = [CLIPVisionLoader, CLIPVisionEncode, unCLIPConditioning]
