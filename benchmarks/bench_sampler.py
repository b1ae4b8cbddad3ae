"""KSampler vs a bare diffusers denoising loop, and the Easel workflow vs StableDiffusionPipeline,
on the same weights in the same process.

    python benchmarks/bench_sampler.py                 # tiny model, CPU (seconds)
    python benchmarks/bench_sampler.py --full --dtype bf16 [--compile]   # GPU: SD1.5-size UNet,
                                                       # random weights, 512x512, 20 steps
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks (TFLOP/s) for the fraction-of-peak column.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}


def build_full(folder: Path) -> None:
    """An SD1.5-architecture pipeline with random weights (UNet 860M, VAE, CLIP-L text)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tests.fixtures.tiny_models import write_tokenizer

    write_tokenizer(folder / "tokenizer")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            vocab_size=49408,
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        scheduler=scheduler,
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(str(folder))


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_pair(first: Any, second: Any, device: Any, repeats: int) -> tuple[float, float]:
    """Median seconds of each function, runs interleaved (so a busy machine slows both
    alike), after one warm-up run of each."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in ((first, times[0]), (second, times[1])):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="SD1.5-size model (for a GPU)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best)")
    parser.add_argument("--dtype", default=None, help="fp32, fp16 or bf16 (default: policy)")
    parser.add_argument("--size", type=int, default=None, help="image side (512 full, 16 tiny)")
    parser.add_argument("--steps", type=int, default=None, help="steps (20 full, 10 tiny)")
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument("--models", type=Path, default=None, help="reuse a built model folder")
    args = parser.parse_args(argv)

    import torch
    from diffusers import StableDiffusionPipeline

    from easel.core.cache import OutputCache
    from easel.core.context import Context
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models import devices
    from easel.models.manager import ModelManager
    from easel.nodes.conditioning import TextEncode
    from easel.nodes.sampling import KSampler, noise_for
    from tests.fixtures.tiny_models import build_pipeline

    device = devices.pick_device(args.device)
    dtype = devices.pick_dtype(device, args.dtype)
    size = args.size or (512 if args.full else 16)
    steps = args.steps or (20 if args.full else 10)
    root = args.models or Path(tempfile.mkdtemp(prefix="easel-bench-"))
    folder = root / "bench"
    if not (folder / "model_index.json").exists():
        (build_full if args.full else build_pipeline)(folder)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    os.environ["EASEL_MODELS_DIR"] = str(root)  # what the loader's name choices read

    manager = ModelManager([root], device=device, dtype=dtype)
    model, clip, vae = manager.load_checkpoint("bench")
    unet = manager.place(model.unet)
    manager.place(vae.vae)
    manager.place(clip.text_model)
    if args.compile:
        unet.forward = torch.compile(unet.forward, mode="max-autotune-no-cudagraphs")
    prompt, negative = "a red circle on the left", "blue"
    ctx = Context()
    pos = TextEncode.call(ctx, {"clip": clip, "text": prompt})["conditioning"]
    neg = TextEncode.call(ctx, {"clip": clip, "text": negative})["conditioning"]
    factor = model.vae_scale_factor
    latent = {
        "samples": torch.zeros(1, 4, size // factor, size // factor),
        "width": size,
        "height": size,
    }
    settings = {
        "seed": 1,
        "steps": steps,
        "cfg": args.cfg,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
    }

    def ksampler() -> None:
        KSampler.call(
            ctx, {"model": model, "positive": pos, "negative": neg, "latent": latent, **settings}
        )

    def bare_loop() -> None:
        """The loop a diffusers pipeline runs, without Easel around it."""
        from diffusers import EulerDiscreteScheduler

        scheduler = EulerDiscreteScheduler.from_config(model.scheduler_config)
        scheduler.set_timesteps(steps, device=device)
        noise, _ = noise_for(tuple(latent["samples"].shape), 1)
        x = (noise.to(device) * scheduler.init_noise_sigma).to(dtype)
        embeds = torch.cat([neg["embeds"], pos["embeds"]]).to(device, dtype)
        with torch.inference_mode():
            for t in scheduler.timesteps:
                x_in = scheduler.scale_model_input(torch.cat([x] * 2), t)
                uncond, cond = unet(x_in, t, encoder_hidden_states=embeds, return_dict=False)[
                    0
                ].chunk(2)
                x = scheduler.step(uncond + args.cfg * (cond - uncond), t, x, return_dict=False)[0]

    easel_s, bare_s = timed_pair(ksampler, bare_loop, device, args.repeats)
    per_step_easel, per_step_bare = easel_s / steps, bare_s / steps

    registry = load_plugins(entry_points=False)
    workflow = {
        "format": "easel.workflow",
        "version": 1,
        "nodes": {
            "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "bench"}},
            "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": prompt}},
            "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": negative}},
            "lat": {"type": "EmptyLatent", "inputs": {"width": size, "height": size}},
            "k": {
                "type": "KSampler",
                "inputs": {
                    "model": ["ckpt", "model"],
                    "positive": ["pos", "conditioning"],
                    "negative": ["neg", "conditioning"],
                    "latent": ["lat", "latent"],
                    **settings,
                },
            },
            "dec": {
                "type": "VAEDecode",
                "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]},
            },
        },
    }

    def easel_workflow() -> None:  # a fresh output cache: every node runs, as in the pipeline
        executor = Executor(registry, OutputCache(), services={"models": manager})
        result = executor.run(workflow, targets=["dec"])
        assert result.status == "succeeded", result.failures

    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae.vae,
        text_encoder=clip.text_model,
        tokenizer=clip.tokenizer,
        scheduler=_euler(model.scheduler_config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)

    def pipeline() -> None:
        pipe(
            prompt,
            negative_prompt=negative,
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=args.cfg,
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="pt",
        )

    e2e_easel, e2e_pipe = timed_pair(easel_workflow, pipeline, device, args.repeats)

    machine = (
        f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
        f"device {device}"
    )
    if device.type == "cuda":
        machine += f" ({torch.cuda.get_device_name(device)})"
    print(
        f"# bench_sampler: {'SD1.5-size' if args.full else 'tiny'} UNet, {size}x{size}, "
        f"{steps} steps, cfg {args.cfg}, euler, dtype {str(dtype).removeprefix('torch.')}, "
        f"compile {args.compile}"
    )
    print(f"# machine: {machine}")
    print("| measure | easel | diffusers | ratio | target |")
    print("|---|---|---|---|---|")
    print(
        f"| per step (KSampler vs bare loop) | {per_step_easel * 1000:.2f} ms | "
        f"{per_step_bare * 1000:.2f} ms | {per_step_easel / per_step_bare:.3f}x | <= 1.02x |"
    )
    print(
        f"| end to end (workflow vs pipeline) | {e2e_easel * 1000:.1f} ms | "
        f"{e2e_pipe * 1000:.1f} ms | {e2e_easel / e2e_pipe:.3f}x | <= 1.0x |"
    )
    print(
        f"| it/s (KSampler, CFG batch of 2) | {1 / per_step_easel:.2f} | "
        f"{1 / per_step_bare:.2f} | | |"
    )
    if device.type == "cuda":
        flops = unet_flops(unet, latent["samples"].shape, pos["embeds"].shape, device, dtype)
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        achieved = flops / per_step_easel / 1e12
        share = f"{achieved / peak:.1%} of {peak:.0f}" if peak else "unknown peak"
        print(f"| UNet TFLOP/s (CFG step) | {achieved:.1f} | | {share} bf16 peak | |")
    return 0


def _euler(config: dict[str, Any]) -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config(
        {k: v for k, v in config.items() if not k.startswith("_")}
    )


def unet_flops(unet: Any, latent_shape: Any, embed_shape: Any, device: Any, dtype: Any) -> float:
    """FLOPs of one guided step (batch 2) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, *latent_shape[1:], device=device, dtype=dtype)
    embeds = torch.randn(2, *embed_shape[1:], device=device, dtype=dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        unet(x, torch.tensor(500, device=device), encoder_hidden_states=embeds)
    return float(counter.get_total_flops())


if __name__ == "__main__":
    raise SystemExit(main())
