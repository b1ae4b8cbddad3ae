"""Writes the trained family as one standard model folder (Stable Diffusion layout + extras)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from easel.zoo.shapes.components import load_clip, load_vae, require, text_encoder_from_clip
from easel.zoo.shapes.configs import (
    LATENT_CHANNELS,
    NATIVE_SIZE,
    UPSCALER_UPSAMPLE,
    VAE_SCALE_FACTOR,
    latent_scheduler_config,
    pixel_scheduler_config,
    prior_scheduler_config,
)

MODEL_NAME = "easel-shapes"
RECOMMENDED = {"steps": 20, "cfg": 3.0, "sampler": "euler", "scheduler": "normal"}
DEFAULT_PROMPT = "a large red circle on a white background"
DEFAULT_PROMPT_WITH_POSITION = "a large red circle on the left on a white background"


def export_family(
    work_dir: Path,
    out_dir: Path,
    dtype: str = "float16",
    recommended: dict[str, Any] | None = None,
    default_prompt: str | None = None,
) -> Path:
    """Export every trained stage in work_dir to out_dir (replacing what is there)."""
    from diffusers import (
        DDPMScheduler,
        PriorTransformer,
        StableDiffusionPipeline,
        UNet2DConditionModel,
        UNet2DModel,
    )

    torch_dtype = {"float16": torch.float16, "float32": torch.float32}[dtype]
    for stage in ("vae", "clip", "unet", "prior", "decoder", "upscaler"):
        require(work_dir / stage / "model", stage)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    vae = load_vae(work_dir, dtype=torch_dtype)
    clip, tokenizer = load_clip(work_dir)
    unet = UNet2DConditionModel.from_pretrained(work_dir / "unet" / "model", dtype=torch_dtype)
    clip = clip.to(torch_dtype)
    pipe: Any = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder_from_clip(clip),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDPMScheduler.from_config(latent_scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)

    clip.save_pretrained(out_dir / "clip", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "clip")
    _copy_if_exists(
        work_dir / "clip" / "model",
        out_dir / "clip",
        ("preprocessor_config.json", "vocab.json", "merges.txt"),
    )
    _copy_if_exists(
        work_dir / "clip" / "model", out_dir / "tokenizer", ("vocab.json", "merges.txt")
    )

    prior = PriorTransformer.from_pretrained(work_dir / "prior" / "model", dtype=torch_dtype)
    prior.save_pretrained(out_dir / "prior", safe_serialization=True)
    DDPMScheduler.from_config(prior_scheduler_config()).save_pretrained(out_dir / "prior_scheduler")

    decoder = UNet2DConditionModel.from_pretrained(
        work_dir / "decoder" / "model", dtype=torch_dtype
    )
    decoder.save_pretrained(out_dir / "decoder", safe_serialization=True)

    upscaler = UNet2DModel.from_pretrained(work_dir / "upscaler" / "model", dtype=torch_dtype)
    upscaler.save_pretrained(out_dir / "upscaler", safe_serialization=True)
    DDPMScheduler.from_config(pixel_scheduler_config()).save_pretrained(out_dir / "upscaler")
    _write_json(
        out_dir / "upscaler" / "upscaler.json",
        {
            "factor": 2,
            "input_size": NATIVE_SIZE,
            "output_size": 2 * NATIVE_SIZE,
            "repeatable": True,
            "max_output_size": 4 * NATIVE_SIZE,
            "conditioning": "concat",
            "input_channels": [
                "noisy image (3)",
                f"low-res image, {UPSCALER_UPSAMPLE} 2x upsampled (3)",
            ],
            "upsample": UPSCALER_UPSAMPLE,
            "value_range": [-1.0, 1.0],
            "prediction_type": pixel_scheduler_config()["prediction_type"],
            "recommended_steps": 20,
        },
    )

    unet_result = _read_json(work_dir / "unet" / "result.json")
    if recommended is None:
        recommended = {**RECOMMENDED, **unet_result.get("recommended", {})}
    if default_prompt is None:
        # Advertise position words only when the measured position accuracy earns it.
        position = unet_result.get("eval", {}).get("position_accuracy", 0.0)
        default_prompt = DEFAULT_PROMPT_WITH_POSITION if position >= 0.9 else DEFAULT_PROMPT
    _write_json(
        out_dir / "easel.json",
        {
            "name": MODEL_NAME,
            "native_size": NATIVE_SIZE,
            "latent_channels": LATENT_CHANNELS,
            "vae_scale_factor": VAE_SCALE_FACTOR,
            "recommended": recommended,
            "default_prompt": default_prompt,
            "prior": {
                "steps": 25,
                "cfg": 4.0,
                "decoder_cfg": 3.0,
                "negative_image_embeds": "zeros",
            },
            "dtype": dtype,
        },
    )
    (out_dir / "TRAINING.md").write_text(training_record(work_dir))
    return out_dir


def _copy_if_exists(src_dir: Path, dst_dir: Path, names: tuple[str, ...]) -> None:
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src_dir / name).exists():
            shutil.copy2(src_dir / name, dst_dir / name)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def training_record(work_dir: Path) -> str:
    """TRAINING.md: the command, and per stage the steps, wall time, seed and final metrics."""
    import platform

    lines = [
        f"# How {MODEL_NAME} was trained",
        "",
        "Command: `python -m easel.zoo train shapes --stage all --threads 1 "
        "--work-dir build/zoo/shapes`, then `python -m easel.zoo export shapes`.",
        "Every stage is seeded and resumable; each step's data and noise depend only on",
        "(seed, stage, step), so a resumed run repeats the same batches.",
        f"Exported with torch {torch.__version__} on {platform.platform()}.",
        "",
        "| stage | steps | batch | wall minutes | seed | machine | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage in ("vae", "clip", "unet", "prior", "decoder", "upscaler"):
        path = work_dir / stage / "result.json"
        if not path.exists():
            lines.append(f"| {stage} | - | - | - | - | - | not recorded |")
            continue
        info = json.loads(path.read_text())
        machine = info.get("machine", {})
        where = (
            f"{machine.get('device', 'cpu')}, {machine.get('cpus', '?')} cores, "
            f"{machine.get('torch_threads', '?')} threads"
            if machine
            else "-"
        )
        skip = ("stage", "steps", "minutes", "seed", "batch_size", "machine")
        extra = {k: v for k, v in info.items() if k not in skip}
        lines.append(
            f"| {stage} | {info['steps']} | {info.get('batch_size', '-')} | {info['minutes']} | "
            f"{info['seed']} | {where} | `{json.dumps(extra)}` |"
        )
    notes = work_dir / "NOTES.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    return "\n".join(lines) + "\n"
