"""First load of an SDXL single file: Easel (nothing beside the file) against diffusers'
`StableDiffusionXLPipeline.from_single_file` given a local config folder.

The file has the real SDXL base architecture (UNet 2.6 B, CLIP-L and OpenCLIP-bigG, VAE) in the
original key layout, with random fp16 weights written by this script (about 6.9 GB on disk;
`--scale small` makes a model with the same layout at a fraction of the size). Each load runs
in a fresh process; the file is in the page cache for both. "ready" is the loader returning
(the diffusers and transformers model classes are imported before timing, for both);
"touched" adds reading every weight once (a lazily mapped tensor is only read then), so the
two loaders are compared on the same work.

    python benchmarks/bench_single_file_load.py [--scale full|small] [--repeat 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, {root!r})
which, path, models, comfy, config = sys.argv[1:6]
started = time.perf_counter()
# both loaders build the same diffusers and transformers classes: import them before timing
import diffusers.loaders.single_file_utils
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
if which == "easel":
    from easel.models.manager import ModelManager
    imported = time.perf_counter()
    manager = ModelManager([models, comfy], device="cpu", dtype=torch.float16)
    model, clip, vae = manager.load_checkpoint(path)
    modules = [model.unet, vae.vae] + [part.model for part in clip.parts]
else:
    from diffusers import StableDiffusionXLPipeline
    imported = time.perf_counter()
    pipe = StableDiffusionXLPipeline.from_single_file(
        path, config=config, local_files_only=True, torch_dtype=torch.float16)
    modules = [pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2]
ready = time.perf_counter()
total = 0.0
with torch.no_grad():
    for module in modules:
        for p in module.parameters():
            total += float(p.float().sum())
touched = time.perf_counter()
params = sum(p.numel() for m in modules for p in m.parameters())
print(json.dumps({{"import": imported - started, "ready": ready - imported,
                  "touched": touched - imported, "params": params}}))
"""


def build(scale: str, where: Path) -> tuple[Path, Path, Path, Path]:
    """The SDXL single file, a models folder holding only it, a ComfyUI install for the
    tokenizer, and diffusers' config folder (configs and tokenizers, no weights)."""
    import torch
    from diffusers import EulerDiscreteScheduler
    from safetensors.torch import save_file
    from transformers import CLIPTokenizer

    from tests.fixtures.real_layouts import REAL, real_state_dict
    from tests.fixtures.sd_family import SHARED_CLIP, write_comfy_tokenizer

    if scale == "small":
        REAL["sdxl"] = dict(
            REAL["sdxl"],
            block_out_channels=(64, 128, 256),
            attention_head_dim=(1, 2, 4),
            transformer_layers_per_block=(1, 2, 2),
        )
    models = where / "models"
    path = models / "checkpoints" / f"sdxl-{scale}.safetensors"
    comfy = where / "ComfyUI"
    config = where / "sdxl-config"
    write_comfy_tokenizer(comfy)
    meta = real_state_dict("sdxl")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(0)
        state = {}
        for key, value in meta.items():
            tensor = torch.empty(value.shape, dtype=torch.float16)
            state[key] = (
                tensor.normal_(0, 0.02, generator=generator) if tensor.dim() > 1 else tensor.zero_()
            )
        save_file(state, str(path))
        del state
    # diffusers' config folder, built from the same meta models
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig

    from tests.fixtures.real_layouts import CLIP_G, CLIP_L

    with torch.device("meta"):
        UNet2DConditionModel(**REAL["sdxl"]).save_config(str(config / "unet"))
        AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            scaling_factor=0.13025,
        ).save_config(str(config / "vae"))
    CLIPTextConfig(**CLIP_L, architectures=["CLIPTextModel"]).save_pretrained(
        str(config / "text_encoder")
    )
    CLIPTextConfig(**CLIP_G, architectures=["CLIPTextModelWithProjection"]).save_pretrained(
        str(config / "text_encoder_2")
    )
    for sub, pad in (("tokenizer", "<|endoftext|>"), ("tokenizer_2", "!")):
        CLIPTokenizer(
            str(SHARED_CLIP / "vocab.json"), str(SHARED_CLIP / "merges.txt"), pad_token=pad
        ).save_pretrained(str(config / sub))
    EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    ).save_pretrained(str(config / "scheduler"))
    (config / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionXLPipeline",
                "_diffusers_version": "0.42.1",
                "force_zeros_for_empty_prompt": True,
                "feature_extractor": [None, None],
                "image_encoder": [None, None],
                "scheduler": ["diffusers", "EulerDiscreteScheduler"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "tokenizer_2": ["transformers", "CLIPTokenizer"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
            }
        )
    )
    return path, models, comfy, config


def load_once(which: str, path: Path, models: Path, comfy: Path, config: Path) -> dict:
    code = CHILD.format(root=str(ROOT))
    name = path.name if which == "easel" else str(path)
    out = subprocess.run(
        [sys.executable, "-c", code, which, name, str(models), str(comfy), str(config)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("full", "small"), default="full")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    where = args.dir or Path(tempfile.mkdtemp(prefix="easel-sdxl-"))
    started = time.perf_counter()
    path, models, comfy, config = build(args.scale, where)
    size = path.stat().st_size / 1e9
    print(
        f"SDXL single-file load, scale={args.scale}: {size:.2f} GB file "
        f"(built in {time.perf_counter() - started:.0f} s) on {platform.node()} "
        f"({platform.machine()}, {os.cpu_count()} cores), fp16 weights, CPU"
    )
    rows: dict[str, list[dict]] = {"easel": [], "diffusers": []}
    for _ in range(args.repeat):
        for which in ("easel", "diffusers"):
            rows[which].append(load_once(which, path, models, comfy, config))
    print(f"{'loader':<52}{'ready (s)':>10}{'touched (s)':>13}{'params':>15}")
    labels = {
        "easel": "Easel CheckpointLoader, nothing beside the file",
        "diffusers": "diffusers from_single_file(config=local folder)",
    }
    for which, runs in rows.items():
        ready = statistics.median(r["ready"] for r in runs)
        touched = statistics.median(r["touched"] for r in runs)
        print(f"{labels[which]:<52}{ready:>10.2f}{touched:>13.2f}{runs[0]['params']:>15,}")
    e = statistics.median(r["touched"] for r in rows["easel"])
    d = statistics.median(r["touched"] for r in rows["diffusers"])
    print(f"Easel / diffusers (touched, median of {args.repeat}): {e / d:.2f}")
    if args.dir is None:
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
