"""VAEDecodeTiled / VAEEncodeTiled: diffusers' own tiled decode and encode, with the node's tile
settings for the call and the shared VAE's settings put back afterwards."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.models.handles import VaeHandle
from easel.nodes.vae import VAEDecode, VAEEncode
from easel.nodes.vae_tiled import VAEDecodeTiled, VAEEncodeTiled

TILE, OVERLAP = 64, 16  # pixels; the tiny VAE's factor is 2: latent tiles of 32


class _Manager:
    def place(self, module: Any) -> Any:
        return module


class _Warnings(Context):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.on_warning = self.seen.append


@pytest.fixture(scope="module")
def handle() -> VaeHandle:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        sample_size=32,
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    ).eval()
    return VaeHandle("tiny", vae, _Manager())


def _settings(vae: Any) -> dict[str, Any]:
    names = ("use_tiling", "tile_sample_min_size", "tile_latent_min_size", "tile_overlap_factor")
    return {name: getattr(vae, name) for name in names}


def _run(node_type: Any, ctx: Context, **inputs: Any) -> Any:
    return node_type.call(ctx, {**node_type.value_defaults, **inputs})


@pytest.mark.filterwarnings("ignore:The tiled_encode implementation:FutureWarning")
def test_tiled_decode_and_encode_are_diffusers_tiling(handle: VaeHandle) -> None:
    vae = handle.vae
    before = _settings(vae)
    latents = torch.randn(1, 4, 48, 40, generator=torch.Generator().manual_seed(1))
    latent = {"samples": latents}
    latents = latents / vae.config.scaling_factor  # what VAEDecode decodes

    ctx = _Warnings()
    tiled = _run(VAEDecodeTiled, ctx, vae=handle, latent=latent, tile_size=TILE, overlap=OVERLAP)
    tiled = tiled["image"]
    assert _settings(vae) == before  # the shared module's tiling is put back
    assert not ctx.seen
    plain = VAEDecode.fn(handle, latent)

    # diffusers' tiled decode with the same tiles: 64-pixel tiles, 16 pixels blended
    vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor = 64, 32, 0.25
    try:
        with torch.inference_mode():
            expected = vae.tiled_decode(latents, return_dict=False)[0]
    finally:
        for name, value in before.items():
            setattr(vae, name, value)
    expected = (expected / 2 + 0.5).clamp(0, 1)
    assert tiled.shape == plain.shape == (1, 3, 96, 80)
    assert torch.equal(tiled, expected)
    # only the blending at the seams (and each tile's own group norms) differ from one piece
    difference = (tiled - plain).abs()
    assert 0 < float(difference.mean()) < 0.05

    image = tiled
    encoded = _run(VAEEncodeTiled, ctx, vae=handle, image=image, tile_size=TILE, overlap=OVERLAP)
    assert _settings(vae) == before
    vae.tile_sample_min_size, vae.tile_latent_min_size, vae.tile_overlap_factor = 64, 32, 0.25
    try:
        with torch.inference_mode():
            mode = vae.tiled_encode(image * 2 - 1).latent_dist.mode()
    finally:
        for name, value in before.items():
            setattr(vae, name, value)
    assert torch.equal(encoded["latent"]["samples"], mode * vae.config.scaling_factor)
    whole = VAEEncode.fn(Context(), handle, image)["samples"]
    assert not torch.equal(encoded["latent"]["samples"], whole)


def test_overlap_over_a_quarter_and_errors_restore(handle: VaeHandle) -> None:
    before = _settings(handle.vae)
    ctx = _Warnings()
    latent = {"samples": torch.zeros(1, 4, 40, 40)}
    _run(VAEDecodeTiled, ctx, vae=handle, latent=latent, tile_size=64, overlap=32)
    assert any("quarter" in message for message in ctx.seen)
    with pytest.raises(Exception, match="channels"):  # VAEDecode's own check, inside the tiling
        _run(VAEDecodeTiled, ctx, vae=handle, latent={"samples": torch.zeros(1, 3, 40, 40)})
    assert _settings(handle.vae) == before


def test_a_vae_without_tiling_warns() -> None:
    from diffusers import VQModel

    torch.manual_seed(0)
    vq = VQModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        latent_channels=3,
        num_vq_embeddings=8,
        vq_embed_dim=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    ).eval()
    handle = VaeHandle("vq", vq, _Manager())
    ctx = _Warnings()
    latent = {"samples": torch.randn(1, 3, 8, 8)}
    out = _run(VAEDecodeTiled, ctx, vae=handle, latent=latent)["image"]
    assert torch.equal(out, VAEDecode.fn(handle, latent))
    assert any("VQModel" in message for message in ctx.seen)


def test_tiled_nodes_in_a_workflow(run_workflow: Any) -> None:
    """A checkpoint's VAE: an image encoded and decoded in tiles, beside the plain nodes."""
    vae = ["ckpt", "vae"]
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "tiny-shapes"}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": 96, "height": 80, "vae": vae}},
        "noise": {"type": "VAEDecode", "inputs": {"vae": vae, "latent": ["lat", "latent"]}},
        "enc": {"type": "VAEEncodeTiled", "inputs": {"vae": vae, "image": ["noise", "image"]}},
        "tiled": {"type": "VAEDecodeTiled", "inputs": {"vae": vae, "latent": ["enc", "latent"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": vae, "latent": ["enc", "latent"]}},
    }
    nodes["enc"]["inputs"].update(tile_size=64, overlap=16)
    nodes["tiled"]["inputs"].update(tile_size=64, overlap=16)
    result = run_workflow(nodes, ["dec", "tiled"])
    plain, tiled = result.values["dec"]["image"], result.values["tiled"]["image"]
    assert tiled.shape == plain.shape == (1, 3, 80, 96)
    assert 0 < float((tiled - plain).abs().mean()) < 0.05


@pytest.mark.slow
def test_qwen_image_vae_tiles_with_its_stride_settings() -> None:
    """The Qwen-Image / Wan VAE (held inside Easel's QwenVae) tiles as its enable_tiling with
    the same tile and stride does, and its settings come back."""
    from diffusers import AutoencoderKLQwenImage

    from easel.models.qwen_vae import QwenVae

    torch.manual_seed(0)
    inner = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    ).eval()
    handle = VaeHandle("qwen", QwenVae(inner), _Manager())
    names = ("use_tiling", "tile_sample_min_height", "tile_sample_stride_height")
    before = {name: getattr(inner, name) for name in names}
    latent = {"samples": torch.randn(1, 4, 12, 10, generator=torch.Generator().manual_seed(2))}
    ctx = _Warnings()
    tiled = _run(VAEDecodeTiled, ctx, vae=handle, latent=latent, tile_size=TILE, overlap=OVERLAP)
    assert {name: getattr(inner, name) for name in names} == before
    assert not ctx.seen
    plain = VAEDecode.fn(handle, latent)
    stride = TILE - OVERLAP
    inner.enable_tiling(
        tile_sample_min_height=TILE,
        tile_sample_min_width=TILE,
        tile_sample_stride_height=stride,
        tile_sample_stride_width=stride,
    )
    try:
        expected = VAEDecode.fn(handle, latent)
    finally:
        for name, value in before.items():
            setattr(inner, name, value)
    assert torch.equal(tiled["image"], expected)
    assert 0 < float((tiled["image"] - plain).abs().mean()) < 0.05
