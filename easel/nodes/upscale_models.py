"""Upscale models: the loader (ESRGAN-family files and bundle diffusion upscalers) and
ImageUpscaleWithModel, which runs an ESRGAN-family model tile by tile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.core.budget import budget_of
from easel.core.context import Context
from easel.core.node import Input, NodeError, node
from easel.core.types import Image, UpscaleModel
from easel.nodes.model_access import manager, model_errors

MAX_TILE = 8192


def upscale_model_names() -> list[str]:
    """Choices of UpscaleModelLoader: `upscale_models/` files, then bundles with an upscaler."""
    from easel.models import discovery, upscale_models

    files = upscale_models.names()
    return files + [n for n in discovery.names_with_part("upscaler") if n not in files]


def _roots(ctx: Context) -> list[Path] | None:
    models = ctx.services.get("models")
    return list(models.roots) if models is not None else None


def _bundle_upscaler(name: str, roots: list[Path] | None) -> Path | None:
    """The `upscaler/` folder of the Easel bundle `name`, if that is what `name` means."""
    from easel.models import discovery, upscale_models

    if Path(name).suffix.lower() in upscale_models.SUFFIXES:
        return None
    entry = discovery.discover(roots=roots).get(name)
    if entry is None or "upscaler" not in entry.parts:
        return None
    return entry.path / "upscaler"


def _fingerprint(ctx: Context, inputs: dict[str, Any]) -> str:
    """The model file's (or bundle upscaler's) size and time: a replaced model reloads."""
    from easel.models import discovery, upscale_models
    from easel.models.errors import ModelError

    name = str(inputs.get("name", ""))
    roots = _roots(ctx)
    path = _bundle_upscaler(name, roots)
    if path is None:
        try:
            path = discovery.resolve(upscale_models.KIND, name, roots=roots)
        except ModelError:
            return "missing"
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


@node(category="loaders", outputs={"upscale_model": UpscaleModel}, fingerprint=_fingerprint)
def UpscaleModelLoader(ctx: Context, name: str = Input(choices=upscale_model_names)) -> Any:
    """Load an upscale model: an ESRGAN-family file from `upscale_models/` (.safetensors, or
    .pth/.pt/.ckpt when unsafe pickle is allowed; run it with ImageUpscaleWithModel), or an
    Easel bundle's diffusion upscaler (run it with ModelUpscale)."""
    from easel.models import upscale_models
    from easel.models.errors import ModelError

    models = manager(ctx)
    with model_errors("name"):
        if _bundle_upscaler(name, list(models.roots)) is not None:
            return models.load_upscaler(name)
        try:
            return upscale_models.load(models, name)
        except ModelError as exc:
            bundles = models.names_with_part("upscaler")
            if "no upscale_models model named" in str(exc) and bundles:
                raise ModelError(
                    f"{exc} Bundles with a diffusion upscaler: {', '.join(bundles)}."
                ) from exc
            raise


@node(category="image", outputs={"image": Image})
def ImageUpscaleWithModel(
    ctx: Context,
    upscale_model: UpscaleModel,
    image: Image,
    tile: int = Input(
        512,
        ge=0,
        le=MAX_TILE,
        step=8,
        description="tile side in input pixels; 0 runs the whole image at once",
    ),
    overlap: int = Input(
        32, ge=0, le=MAX_TILE // 2, description="input pixels shared by neighbouring tiles, blended"
    ),
) -> Any:
    """Upscale by the model's factor with an ESRGAN-family model (Real-ESRGAN, SwinIR, ...),
    tile by tile: model memory is bounded by the tile, overlapping tiles are blended, progress
    is reported and cancellation checked after every tile."""
    from easel.models import upscale_models

    if not isinstance(upscale_model, upscale_models.SpandrelUpscaler):
        raise NodeError(
            f"{getattr(upscale_model, 'name', 'this model')} is a diffusion "
            "upscaler: run it with ModelUpscale",
            "upscale_model",
        )
    if tile and overlap * 2 > tile:
        raise NodeError(
            f"overlap {overlap} is more than half the tile ({tile}); lower it or raise tile",
            "overlap",
        )
    batch, _, height, width = image.shape
    scale = upscale_model.scale
    problem = budget_of(ctx.services).problem(width * scale, height * scale, batch=batch)
    if problem:
        raise NodeError(f"the {scale}x result: {problem}", "image")
    ctx.check_cancelled()
    with model_errors("image"):
        return upscale_models.upscale(
            upscale_model, image, tile=tile, overlap=overlap, on_tile=ctx.progress, warn=ctx.warn
        )


NODES = [UpscaleModelLoader, ImageUpscaleWithModel]
