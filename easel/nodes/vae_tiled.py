"""VAEDecodeTiled and VAEEncodeTiled (ComfyUI's "VAE Decode (Tiled)" / "VAE Encode (Tiled)"):
VAEDecode and VAEEncode run tile by tile, for large images on small GPUs.

The tiling is diffusers' own (AutoencoderKL's tiled_decode / tiled_encode and their kind:
`tile_sample_min_size`, `tile_latent_min_size`, `tile_overlap_factor`; the Qwen-Image / Wan VAEs'
`tile_sample_min_height` / `tile_sample_stride_height`): the node sets the autoencoder's tile
settings from its inputs for the one call and puts them back afterwards (the module is shared).
Easel's VAE wrappers (Flux.2's latent space, Qwen-Image's one-frame view) hold the diffusers
autoencoder as `.vae`; its settings are the ones set. A VAE class diffusers has no tiling for
(VQModel) decodes in one piece, with a warning naming the class.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from easel.core.context import Context
from easel.core.node import Input, node
from easel.core.types import Image, Latent, Vae

# ComfyUI's bounds (nodes.py): pixels for tile_size / overlap, frames for the temporal pair.
TILE_SIZE = Input(512, ge=64, le=4096, step=32)
OVERLAP = Input(64, ge=0, le=4096, step=32)
TEMPORAL_SIZE = Input(64, ge=8, le=4096, step=4)
TEMPORAL_OVERLAP = Input(8, ge=4, le=4096, step=4)


def autoencoder(module: Any) -> Any:
    """The diffusers autoencoder inside `module` that has tiling (`use_tiling`), or None."""
    for candidate in (module, getattr(module, "vae", None)):
        if candidate is not None and hasattr(candidate, "use_tiling"):
            return candidate
    return None


def _factor(vae: Any) -> int:
    """The autoencoder's own spatial factor (pixels per latent cell)."""
    for name in ("spatial_scale_factor", "spatial_compression_ratio"):
        value = getattr(vae, name, None)
        if value:
            return int(value)
    return int(2 ** (len(vae.config.block_out_channels) - 1))


def tile_settings(vae: Any, tile_size: int, overlap: int) -> dict[str, Any] | None:
    """The attributes that make `vae` tile in `tile_size`-pixel tiles overlapping by `overlap`
    pixels, in whichever of diffusers' two conventions it uses; None when it uses neither."""
    if hasattr(vae, "tile_sample_stride_height"):  # Wan / Qwen-Image and the video VAEs
        stride = tile_size - overlap
        return {
            "use_tiling": True,
            "tile_sample_min_height": tile_size,
            "tile_sample_min_width": tile_size,
            "tile_sample_stride_height": stride,
            "tile_sample_stride_width": stride,
        }
    if hasattr(vae, "tile_overlap_factor") and hasattr(vae, "tile_latent_min_size"):
        return {  # AutoencoderKL, AutoencoderKLFlux2, AutoencoderTiny
            "use_tiling": True,
            "tile_sample_min_size": tile_size,
            "tile_latent_min_size": tile_size // _factor(vae),
            "tile_overlap_factor": overlap / tile_size,
        }
    return None


@contextmanager
def tiling(ctx: Context, module: Any, tile_size: int, overlap: int) -> Iterator[None]:
    """Within the block, `module` (a VAE as the handle holds it) tiles as asked; its settings
    are restored on leaving, also after an error. Warns and tiles nothing when diffusers has no
    tiling for its class."""
    vae = autoencoder(module)
    settings = tile_settings(vae, tile_size, overlap) if vae is not None else None
    if vae is None or settings is None:
        name = type(vae if vae is not None else module).__name__
        ctx.warn(f"{name} has no tiled decoding or encoding in diffusers: ran it in one piece")
        yield
        return
    saved = {key: getattr(vae, key) for key in settings}
    try:
        for key, value in settings.items():
            setattr(vae, key, value)
        yield
    finally:
        for key, value in saved.items():
            setattr(vae, key, value)


def _overlap(ctx: Context, tile_size: int, overlap: int) -> int:
    """ComfyUI's rule: an overlap over a quarter of the tile becomes a quarter."""
    if tile_size < overlap * 4:
        quarter = tile_size // 4
        ctx.warn(f"overlap {overlap} is over a quarter of tile_size {tile_size}: using {quarter}")
        return quarter
    return overlap


@node(category="latent", outputs={"image": Image})
def VAEDecodeTiled(
    ctx: Context,
    vae: Vae,
    latent: Latent,
    tile_size: int = TILE_SIZE,
    overlap: int = OVERLAP,
    temporal_size: int = TEMPORAL_SIZE,
    temporal_overlap: int = TEMPORAL_OVERLAP,
) -> Any:
    """VAEDecode in tiles of `tile_size` pixels overlapping by `overlap` (blended by diffusers'
    tiled decode). `temporal_size` / `temporal_overlap` are for video VAEs (frames per chunk):
    Easel's VAEs decode images, so they do not apply."""
    from easel.nodes.vae import VAEDecode

    overlap = _overlap(ctx, tile_size, overlap)
    module = vae.manager.place(vae.vae)
    with tiling(ctx, module, tile_size, overlap):
        return VAEDecode.fn(vae, latent)


@node(category="latent", outputs={"latent": Latent})
def VAEEncodeTiled(
    ctx: Context,
    vae: Vae,
    image: Image,
    tile_size: int = Input(512, ge=64, le=4096, step=64),
    overlap: int = OVERLAP,
    temporal_size: int = TEMPORAL_SIZE,
    temporal_overlap: int = TEMPORAL_OVERLAP,
) -> Any:
    """VAEEncode in tiles of `tile_size` pixels overlapping by `overlap` (blended by diffusers'
    tiled encode); the temporal inputs are for video VAEs and do not apply."""
    from easel.nodes.vae import VAEEncode

    overlap = _overlap(ctx, tile_size, overlap)
    module = vae.manager.place(vae.vae)
    with tiling(ctx, module, tile_size, overlap):
        return VAEEncode.fn(ctx, vae, image)


NODES = [VAEDecodeTiled, VAEEncodeTiled]
