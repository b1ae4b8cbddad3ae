"""ComfyUI's model-patch nodes: ModelPatchLoader (a file of models/model_patches/, recognised
by its keys) and QwenImageDiffsynthControlnet (a ControlNet patch on a Z-Image or Qwen-Image
model: the Z-Image Fun ControlNet Union, Qwen-Image's DiffSynth canny/depth/inpaint
ControlNets). See easel.models.model_patches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, Mask, Model, Socket, Vae
from easel.nodes.input_checks import mask_batch, require_rgb
from easel.nodes.model_access import discovered, manager, model_errors

ModelPatch = Annotated[Any, Socket("MODEL_PATCH")]  # what socket_type("MODEL_PATCH") makes
KIND = "model_patches"


def _resolve(ctx: Context, name: str) -> Path:
    models = ctx.services.get("models")
    if models is not None:
        return Path(models.resolve(KIND, name))
    from easel.models import discovery

    return discovery.resolve(KIND, name)


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The file's size and time, so a replaced patch reloads."""
    from easel.models.errors import ModelError

    try:
        path = _resolve(ctx, str(inputs.get("name", "")))
    except ModelError:
        return "missing"
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(category="loaders", outputs={"model_patch": ModelPatch}, fingerprint=_fingerprint)
def ModelPatchLoader(ctx: Context, name: str = Input(choices=discovered(KIND))) -> Any:
    """Load a model patch from the models folder's model_patches/, recognised by its keys: a
    Z-Image Fun ControlNet (Union) or a Qwen-Image DiffSynth ControlNet (canny, depth,
    inpaint), applied with QwenImageDiffsynthControlnet; or an Anima ControlNet-LLLite,
    applied with AnimaLLLiteApply."""
    from easel.models.model_patches import model_patch_handle

    models = manager(ctx)
    with model_errors("name"):
        return model_patch_handle(models, name, _resolve(ctx, name))


@node(category="conditioning", outputs={"model": Model})
def QwenImageDiffsynthControlnet(
    model: Model,
    model_patch: ModelPatch,
    vae: Vae,
    image: Image,
    strength: float = Input(1.0, ge=-10.0, le=10.0, step=0.01),
    mask: Mask = None,
) -> Any:
    """Apply a ControlNet model patch to a Z-Image or Qwen-Image model: the control image
    (a Canny, depth or pose map; for the DiffSynth inpaint patch the image to inpaint, with
    `mask` 1 where to paint) is encoded by `vae` at the latent's size when sampling and
    steers every step, times `strength`."""
    from easel.models.errors import ModelError
    from easel.models.model_patches import apply

    require_rgb(image)
    if mask is not None:
        mask = mask_batch(mask)
    try:
        return apply(model, model_patch, vae, image, strength, mask)
    except ModelError as exc:
        raise NodeError(str(exc), "model_patch") from exc


NODES = [ModelPatchLoader, QwenImageDiffsynthControlnet]
