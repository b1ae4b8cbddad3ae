"""Chroma from ComfyUI's split files (the transformer in its original keys, a T5 file alone,
the Flux VAE) through Easel's nodes gives diffusers' ChromaPipeline image (CPU fp32, tiny random
weights, max abs pixel diff 1e-3), with and without a negative prompt."""

from __future__ import annotations

from typing import Any

import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import chroma_family

chroma_root = chroma_family.chroma_root
chroma_models = chroma_family.chroma_models
chroma_manager = chroma_family.chroma_manager
run_chroma = chroma_family.run_chroma

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "blurry, low quality"


def workflow(*, steps: int = 2, cfg: float = 1.0, negative: str | None = None) -> dict[str, Any]:
    """ComfyUI's Chroma template shape with KSampler: UNETLoader, CLIPLoader type chroma,
    VAELoader, CLIPTextEncode, EmptySD3LatentImage, KSampler, VAEDecode."""
    nodes: dict[str, Any] = {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": "chroma.safetensors"}},
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "t5xxl.safetensors", "type": "chroma"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if negative is not None:
        nodes["neg"] = {
            "type": "TextEncode",
            "inputs": {"clip": ["clip", "clip"], "text": negative},
        }
        nodes["k"]["inputs"]["negative"] = ["neg", "conditioning"]
    return nodes


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        **kwargs,
    ).images
    return as_tensor(out)


def test_chroma_split_files_equal_the_pipeline(chroma_models: Any, run_chroma: Any) -> None:
    pipe, _ = chroma_models
    ours = image_of(run_chroma(workflow(), ["dec"]))
    theirs = reference(pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=1.0)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_chroma_with_cfg_and_a_negative_equals_the_pipeline(
    chroma_models: Any, run_chroma: Any
) -> None:
    pipe, _ = chroma_models
    ours = image_of(run_chroma(workflow(cfg=4.0, negative=NEGATIVE), ["dec"]))
    theirs = reference(
        pipe, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=2, guidance_scale=4.0
    )
    plain = reference(pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE


def test_flux_does_not_claim_a_chroma_file(chroma_models: Any) -> None:
    from easel.models.families import chroma, flux
    from easel.models.family_files import header

    _, files = chroma_models
    keys = header(files["model"])
    assert keys is not None
    assert flux.recognise(keys) is None
    assert chroma.is_chroma(keys)


def test_a_clip_file_is_not_a_chroma_text_encoder(
    chroma_models: Any, run_chroma: Any, chroma_root: Any
) -> None:
    from safetensors.torch import save_file

    del chroma_models  # the models folder exists
    weights = {"text_model.encoder.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4)}
    save_file(weights, str(chroma_root / "models" / "text_encoders" / "not_t5.safetensors"))
    nodes = workflow()
    nodes["clip"]["inputs"]["name"] = "not_t5.safetensors"
    result = run_chroma(nodes, ["dec"])
    assert result.status != "succeeded"
    assert "not_t5.safetensors" in str(result.failures)


def test_t5_tokenizer_options_pad_as_comfyui(chroma_models: Any, run_chroma: Any) -> None:
    """T5TokenizerOptions(min_padding=1) pads the prompt with one token (ComfyUI's way): the
    pipeline's image at that max_sequence_length, another than the 512-token default's."""
    pipe, _ = chroma_models
    nodes = workflow()
    nodes["opts"] = {
        "type": "T5TokenizerOptions",
        "inputs": {"clip": ["clip", "clip"], "min_padding": 1, "min_length": 0},
    }
    nodes["pos"]["inputs"]["clip"] = ["opts", "clip"]
    ours = image_of(run_chroma(nodes, ["dec"]))
    length = len(pipe.tokenizer(PROMPT).input_ids) + 1  # the prompt, its end token, one pad
    theirs = reference(
        pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=1.0, max_sequence_length=length
    )
    default = reference(pipe, prompt=PROMPT, num_inference_steps=2, guidance_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - default).abs().max().item() > 10 * TOLERANCE


def test_a_diffusers_folder_gives_the_split_files_image(
    chroma_models: Any, chroma_root: Any, run_chroma: Any, monkeypatch: Any
) -> None:
    """CheckpointLoader on the diffusers ChromaPipeline folder gives the split files' image."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [chroma_root / "diffusers", chroma_root / "models", chroma_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = workflow()
    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "chroma"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["dec"],
        keep_values=True,
    )
    folder = image_of(result)
    files = image_of(run_chroma(split, ["dec"]))
    assert (folder - files).abs().max().item() <= 1e-5


def test_fp8_weights_run_close_to_full_precision(run_chroma: Any) -> None:
    """weight_dtype fp8_e4m3fn stores the transformer's weights in 8 bits and computes in
    float32: the image stays close to the full-precision one."""
    full = image_of(run_chroma(workflow(), ["dec"]))
    nodes = workflow()
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    fp8 = image_of(run_chroma(nodes, ["dec"]))
    assert 0.0 < (full - fp8).abs().max().item() < 0.1
