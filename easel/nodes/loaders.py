"""Loader nodes: checkpoints, CLIP models and unCLIP priors, by discovered name."""

from __future__ import annotations

from typing import Any

from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Clip, Model, Prior, Vae
from easel.nodes.model_access import discovered, manager, model_errors


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The model file's size and time, so a replaced model is reloaded downstream."""
    from easel.models import discovery

    name = str(inputs.get("name", ""))
    models = ctx.services.get("models")
    roots = models.roots if models is not None else None
    entry: Any
    try:
        entry = discovery.find("checkpoints", name, roots)
    except Exception:
        entries = models.entries() if models is not None else discovery.discover()
        entry = entries.get(name.removesuffix("/decoder"))
        if entry is None:
            return "missing"
    stat = entry.path.stat()
    return f"{entry.path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(
    category="loaders", outputs={"model": Model, "clip": Clip, "vae": Vae}, fingerprint=_fingerprint
)
def CheckpointLoader(
    ctx: Context, name: str = Input(choices=discovered("checkpoints"))
) -> dict[str, Any]:
    """Load a checkpoint (diffusers folder or single .safetensors file): its denoising model,
    text encoder and VAE. `<bundle>/decoder` loads a bundle's image-embedding decoder."""
    with model_errors("name"):
        model, clip, vae = manager(ctx).load_checkpoint(name)
    return {"model": model, "clip": clip, "vae": vae}


def _vae_fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The VAE file's size and time."""
    from easel.models import discovery

    models = ctx.services.get("models")
    try:
        path = (
            models.resolve("vae", str(inputs.get("name", "")))
            if models is not None
            else discovery.resolve("vae", str(inputs.get("name", "")))
        )
    except Exception:
        return "missing"
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(category="loaders", outputs={"vae": Vae}, fingerprint=_vae_fingerprint)
def VAELoader(ctx: Context, name: str = Input(choices=discovered("vae"))) -> Any:
    """Load a VAE from the `vae/` folder (a .safetensors file in the original or diffusers
    layout, or a diffusers folder) to use instead of a checkpoint's own. It decodes latents
    with their model family's scaling (SD 1/2 or SDXL)."""
    with model_errors("name"):
        return manager(ctx).load_vae(name)


@node(category="loaders", outputs={"clip": Clip}, fingerprint=_fingerprint)
def CLIPLoader(ctx: Context, name: str = Input(choices=discovered("clip"))) -> Any:
    """Load a full CLIP model (text and image towers), for CLIPScore and unCLIP priors."""
    with model_errors("name"):
        return manager(ctx).load_clip(name)


@node(category="loaders", outputs={"prior": Prior}, fingerprint=_fingerprint)
def PriorLoader(ctx: Context, name: str = Input(choices=discovered("prior"))) -> Any:
    """Load an unCLIP prior (text embedding -> CLIP image embedding)."""
    with model_errors("name"):
        return manager(ctx).load_prior(name)


def require(value: Any, what: str, input_name: str) -> Any:
    """A NodeError when a loader gave no such component (a checkpoint without text encoder)."""
    if value is None:
        raise NodeError(f"the linked model has no {what}", input_name)
    return value


# UpscaleModelLoader lives in upscale_models.py
NODES = [CheckpointLoader, VAELoader, CLIPLoader, PriorLoader]
