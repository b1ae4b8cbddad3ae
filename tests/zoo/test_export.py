"""The exported model folder: exact layout, loads offline as a StableDiffusionPipeline."""

import json

import torch

from easel.zoo.cli import main
from easel.zoo.shapes.configs import FamilyConfig

LAYOUT = {
    "model_index.json",
    "easel.json",
    "TRAINING.md",
    "unet",
    "vae",
    "text_encoder",
    "tokenizer",
    "scheduler",
    "clip",
    "prior",
    "prior_scheduler",
    "decoder",
    "upscaler",
}


def test_export_layout_and_offline_pipeline(work_dir, tmp_path):
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    out = tmp_path / "easel-shapes"
    assert main(["export", "shapes", "--work-dir", str(work_dir), "--out", str(out)]) == 0

    assert {p.name for p in out.iterdir()} == LAYOUT
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["safety_checker"] == [None, None] and index["feature_extractor"] == [None, None]
    info = json.loads((out / "easel.json").read_text())
    assert info["name"] == "easel-shapes" and info["native_size"] == 32
    assert info["latent_channels"] == 4 and info["vae_scale_factor"] == 4
    assert {"steps", "cfg", "sampler"} <= set(info["recommended"]) and info["default_prompt"]
    upscaler = json.loads((out / "upscaler" / "upscaler.json").read_text())
    assert (upscaler["factor"], upscaler["input_size"], upscaler["output_size"]) == (2, 32, 64)
    assert (out / "upscaler" / "scheduler_config.json").exists()
    assert (
        json.loads((out / "scheduler" / "scheduler_config.json").read_text())["clip_sample"]
        is False
    )
    for folder in ("unet", "vae", "prior", "decoder", "upscaler"):
        with safe_open(out / folder / "diffusion_pytorch_model.safetensors", "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    for folder in ("clip", "text_encoder"):
        with safe_open(out / folder / "model.safetensors", "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    assert (out / "clip" / "vocab.json").exists() and (out / "tokenizer" / "merges.txt").exists()

    # fp16 weights load as fp32 for the CPU.
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.dtype == torch.float32 and pipe.vae_scale_factor == 4
    image = pipe("a red circle", num_inference_steps=2, output_type="np").images
    assert image.shape == (1, 32, 32, 3)


def test_shipped_family_fits_in_30_mb_of_fp16():
    from diffusers import AutoencoderKL, PriorTransformer, UNet2DConditionModel, UNet2DModel
    from transformers import CLIPConfig, CLIPModel, CLIPTextModel

    family = FamilyConfig()
    with torch.device("meta"):
        clip = CLIPModel(CLIPConfig(**family.clip_kwargs(600, 598, 599, 599)))
        models = [
            UNet2DConditionModel(**family.unet_kwargs()),
            UNet2DConditionModel(**family.decoder_kwargs()),
            AutoencoderKL(**family.vae_kwargs()),
            PriorTransformer(**family.prior_kwargs()),
            UNet2DModel(**family.upscaler_kwargs()),
            clip,
            CLIPTextModel(clip.config.text_config),
        ]
    total_bytes = 2 * sum(p.numel() for m in models for p in m.parameters())
    assert total_bytes <= 30 * 1024 * 1024, total_bytes / 2**20
