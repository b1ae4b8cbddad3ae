"""Lumina-Image 2.0 from ComfyUI's split files (the transformer in the original keys under
`model.diffusion_model.`, a Gemma 2 text encoder, the Flux VAE) through Easel's nodes gives
diffusers' Lumina2Pipeline image (CPU fp32, tiny random weights, max abs pixel difference
1e-3); a diffusers Lumina2Pipeline folder gives the same image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, image_of
from tests.fixtures import lumina_family

lumina_root = lumina_family.lumina_root
lumina_models = lumina_family.lumina_models
lumina_manager = lumina_family.lumina_manager
run_lumina = lumina_family.run_lumina

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"


def split_workflow(*, steps: int = 3, cfg: float = 4.0, system_prompt: str = "superior") -> Any:
    """UNETLoader, CLIPLoader type lumina2 (a Gemma 2 file), VAELoader,
    CLIPTextEncodeLumina2, EmptySD3LatentImage, KSampler (the empty prompt as negative),
    VAEDecode."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "lumina_2_model_bf16.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "gemma_2_2b_fp16.safetensors", "type": "lumina2"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "pos": {
            "type": "TextEncodeLumina2",
            "inputs": {
                "clip": ["clip", "clip"],
                "system_prompt": system_prompt,
                "user_prompt": PROMPT,
            },
        },
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


def reference(pipe: Any, **kwargs: Any) -> Any:
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        height=SIZE,
        width=SIZE,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        cfg_normalization=False,  # Lumina2Pipeline's default renormalises; KSampler's CFG not
        **kwargs,
    ).images
    return as_tensor(out)


def test_split_files_equal_lumina2_pipeline(lumina_models: Any, run_lumina: Any) -> None:
    """CFG 4 against the empty prompt, the pipeline's system prompt before the prompt."""
    ours = image_of(run_lumina(split_workflow(), ["dec"]))
    theirs = reference(
        lumina_models["lumina2"].pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=4.0
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_system_prompt_and_unguided_sampling(lumina_models: Any, run_lumina: Any) -> None:
    """The "alignment" system prompt is the pipeline's with that text; cfg 1 is no guidance."""
    from easel.nodes.lumina import SYSTEM_PROMPTS

    ours = image_of(run_lumina(split_workflow(cfg=1.0, system_prompt="alignment"), ["dec"]))
    pipe = lumina_models["lumina2"].pipe
    theirs = reference(
        pipe,
        prompt=PROMPT,
        system_prompt=SYSTEM_PROMPTS["alignment"],
        num_inference_steps=3,
        guidance_scale=1.0,
    )
    superior = reference(pipe, prompt=PROMPT, num_inference_steps=3, guidance_scale=1.0)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
    assert (theirs - superior).abs().max().item() > 10 * TOLERANCE


def test_text_encode_lumina2_refuses_a_z_image_clip(lumina_models: Any, run_lumina: Any) -> None:
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name"] = "qwen_3_4b.safetensors"
    result = run_lumina(nodes, ["dec"])
    [failure] = result.failures
    assert (failure.node, failure.input) == ("pos", "clip")
    assert "Lumina 2 CLIP" in failure.message and "qwen3" in failure.message


def test_diffusers_folder_gives_the_same_image(
    lumina_models: Any, lumina_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on the diffusers Lumina2Pipeline folder equals the split files."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [lumina_root / "diffusers", lumina_root / "models", lumina_root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    monkeypatch.setenv("EASEL_GEMMA_TOKENIZER", str(lumina_root / "tokenizers" / "gemma"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    folder = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "lumina2"}},
        "pos": {**split["pos"], "inputs": {**split["pos"]["inputs"], "clip": ["ckpt", "clip"]}},
        "lat": split["lat"],
        "k": {"type": "KSampler", "inputs": {**split["k"]["inputs"], "model": ["ckpt", "model"]}},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }
    images = [
        image_of(
            executor.run(
                {"format": "easel.workflow", "version": 1, "nodes": nodes},
                targets=["dec"],
                keep_values=True,
            )
        )
        for nodes in (split, folder)
    ]
    assert (images[0] - images[1]).abs().max().item() <= 1e-5


def test_fp8_weights_run_close_to_full_precision(run_lumina: Any) -> None:
    """weight_dtype fp8_e4m3fn stores the transformer's weights in 8 bits and computes in
    float32: the image stays close to the full-precision one (not equal: the weights are
    rounded)."""
    full = image_of(run_lumina(split_workflow(), ["dec"]))
    nodes = split_workflow()
    nodes["unet"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    fp8 = image_of(run_lumina(nodes, ["dec"]))
    assert 0.0 < (full - fp8).abs().max().item() < 0.1
