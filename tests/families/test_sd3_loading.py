"""SD3 loading beyond the parity runs: configs read off the real SD3 / 3.5 shapes equal the real
diffusers configs, SD3 Medium (no qk norm) runs as the pipeline, and a single file without text
encoders says where to load them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from easel.models.family_files import Shape
from tests.families.test_sd3_parity import TOLERANCE, reference, split_workflow
from tests.families.workflows import custom_sampling, image_of
from tests.fixtures import sd3_family

# Variants of the family's behaviour (samplers, layouts, edge cases): run with --slow.
pytestmark = pytest.mark.slow

sd3_root = sd3_family.sd3_root
sd3_models = sd3_family.sd3_models
sd3_manager = sd3_family.sd3_manager
run_sd3 = sd3_family.run_sd3

# The diffusers configs of stabilityai's repositories (transformer/config.json)
REAL = {
    "sd3": dict(depth=24, grid=192, qk=False, dual=()),  # stable-diffusion-3-medium
    "sd3.5-large": dict(depth=38, grid=192, qk=True, dual=()),
    "sd3.5-medium": dict(depth=24, grid=384, qk=True, dual=tuple(range(13))),
}


def real_header(depth: int, grid: int, qk: bool, dual: tuple[int, ...]) -> dict[str, Shape]:
    """The shapes of an original-layout SD3 file (heads of 64, one per block: width 64 * depth),
    under ComfyUI's `model.diffusion_model.` prefix."""
    hidden = 64 * depth
    keys = {
        "pos_embed": (1, grid * grid, hidden),
        "x_embedder.proj.weight": (hidden, 16, 2, 2),
        "context_embedder.weight": (hidden, 4096),
        "y_embedder.mlp.0.weight": (hidden, 2048),
        "t_embedder.mlp.0.weight": (hidden, 256),
        "final_layer.linear.weight": (64, hidden),
    }
    for i in range(depth):
        keys[f"joint_blocks.{i}.x_block.attn.qkv.weight"] = (3 * hidden, hidden)
        keys[f"joint_blocks.{i}.context_block.attn.qkv.weight"] = (3 * hidden, hidden)
        if qk:
            keys[f"joint_blocks.{i}.x_block.attn.ln_q.weight"] = (64,)
        if i in dual:
            keys[f"joint_blocks.{i}.x_block.attn2.qkv.weight"] = (3 * hidden, hidden)
    return {"model.diffusion_model." + k: Shape(v) for k, v in keys.items()}


@pytest.mark.parametrize("name", sorted(REAL))
def test_config_off_real_shapes_is_the_real_diffusers_config(name: str) -> None:
    from easel.models.families import sd3

    spec = REAL[name]
    header = real_header(**spec)
    family, _ = sd3.recognise(header) or (None, ())
    assert family is not None and family.name == name
    config = sd3.transformer_config(header)
    depth = int(spec["depth"])
    assert config == {
        "sample_size": 128,
        "patch_size": 2,
        "in_channels": 16,
        "out_channels": 16,
        "num_layers": depth,
        "attention_head_dim": 64,
        "num_attention_heads": depth,
        "joint_attention_dim": 4096,
        "caption_projection_dim": 64 * depth,
        "pooled_projection_dim": 2048,
        "pos_embed_max_size": spec["grid"],
        "dual_attention_layers": spec["dual"],
        "qk_norm": "rms_norm" if spec["qk"] else None,
    }


@pytest.fixture(scope="module")
def sd3_medium(sd3_models: Any, sd3_root: Path) -> Any:
    return sd3_family.build("sd3", sd3_root, shared_from=sd3_models["large"])


def test_sd3_medium_without_qk_norm_equals_pipeline(sd3_medium: Any, run_sd3: Any) -> None:
    result = run_sd3(split_workflow("sd3"), ["unet", "dec"])
    assert result.values["unet"]["model"].family.name == "sd3"
    ours = image_of(result)
    theirs = reference(sd3_medium.pipe)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_single_file_without_text_encoders_names_the_loader(
    sd3_models: Any, sd3_root: Path, run_sd3: Any
) -> None:
    """A checkpoint holding only the transformer and the VAE (as Stability's own files): its
    CLIP has no encoders and TextEncode says to use TripleTextEncoderLoader; with one, the
    image is the split files'."""
    import torch

    sd3_family.write_checkpoint(sd3_models["large"], sd3_root, t5=False, clips=False)
    split = split_workflow()
    nodes = {
        **split,
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "sd3.5_large_no_text.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "a cat"}},
    }
    del nodes["unet"], nodes["vae"]
    nodes["k"]["inputs"]["model"] = ["ckpt", "model"]
    nodes["dec"]["inputs"]["vae"] = ["ckpt", "vae"]
    result = run_sd3(nodes, ["dec"])
    assert result.status == "failed"
    [failure] = result.failures
    assert failure.node == "pos"
    assert "TripleTextEncoderLoader" in failure.message
    nodes["pos"]["inputs"] = {**split["pos"]["inputs"], "clip": ["clip", "clip"]}
    nodes["clip"] = split["clip"]
    ours = image_of(run_sd3(nodes, ["dec"]))
    assert torch.equal(ours, image_of(run_sd3(split_workflow(), ["dec"])))


def test_custom_sampling_with_cfg_guider_equals_ksampler(sd3_models: Any, run_sd3: Any) -> None:
    """ComfyUI's SamplerCustomAdvanced (RandomNoise, CFGGuider with the empty-prompt negative,
    KSamplerSelect euler, BasicScheduler simple) on SD3.5 gives KSampler's image."""
    nodes = split_workflow(cfg=4.5)
    nodes["neg"] = {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": ""}}
    nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    ksampler = image_of(run_sd3(nodes, ["dec"]))
    custom = custom_sampling(nodes, cfg=4.5)
    ours = image_of(run_sd3(custom, ["dec"]))
    assert float(ours.std()) > 0.01
    assert (ours - ksampler).abs().max().item() <= 1e-4
