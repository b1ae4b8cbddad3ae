"""Easel's sampler loop against FluxPipeline's on the same Flux transformer, in one process:
steps per second and the fraction of the device's bf16 peak.

    python benchmarks/bench_flux_sampler.py                          # tiny model, CPU (seconds)
    python benchmarks/bench_flux_sampler.py --full --dtype bf16      # GPU: FLUX.1-dev size
                                                                     # (12B, random weights), 1024²

Both sides run the transformer only (text embeddings are random tensors of the real shapes;
FluxPipeline gets them as prompt_embeds, decodes nothing): Easel through
easel.models.sampling.denoise with its Flux network adapter and FlowMatchEuler at the dev
schedule, FluxPipeline with the same scheduler config, steps and guidance. The runs alternate
after one warm-up each. FLOPs of one step are counted by torch's FlopCounterMode.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "4090": 165.0}
FULL = {  # FLUX.1-dev's transformer
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
}
TINY = {
    "num_layers": 1,
    "num_single_layers": 1,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "joint_attention_dim": 32,
    "pooled_projection_dim": 16,
    "guidance_embeds": True,
    "axes_dims_rope": [4, 6, 6],
}


def build(full: bool, device: Any, dtype: Any) -> Any:
    """A FluxTransformer2DModel with random weights, made on the device (no CPU copy)."""
    import torch
    from diffusers import FluxTransformer2DModel

    config = dict(FULL if full else TINY, in_channels=64, patch_size=1)
    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    model = model.to_empty(device=device)
    generator = torch.Generator(device="cpu").manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            values = torch.randn(param.shape, generator=generator, dtype=torch.float32) * 0.02
            param.copy_(values.to(param.device))
        for buffer in model.buffers():
            buffer.zero_()
    return model.to(dtype).eval()


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="FLUX.1-dev size (for a GPU)")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--size", type=int, default=None, help="pixels (full 1024, tiny 64)")
    parser.add_argument("--steps", type=int, default=None, help="steps (full 20, tiny 4)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    size = args.size or (1024 if args.full else 64)
    steps = args.steps or (20 if args.full else 4)

    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from easel.models.families.flux import DEV_SCHEDULER, FLUX_DEV
    from easel.models.sampling import FlowSchedule, denoise, flow_config

    model = build(args.full, device, dtype)
    config = model.config
    tokens = (size // 16) ** 2
    embeds = torch.randn(1, 512 if args.full else 16, config.joint_attention_dim)
    pooled = torch.randn(1, config.pooled_projection_dim)
    noise = torch.randn(1, 16, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    cond = {"embeds": embeds, "pooled": pooled, "guidance": 3.5}
    scheduler_config = {k: v for k, v in DEV_SCHEDULER.items() if not k.startswith("_")}

    def easel() -> Any:
        settings, flow = flow_config(
            dict(scheduler_config), "FlowMatchEulerDiscreteScheduler", True, tokens
        )
        scheduler = FlowMatchEulerDiscreteScheduler.from_config(settings)
        return denoise(
            model,
            scheduler,
            noise=noise,
            positive=cond,
            negative=None,
            cfg=1.0,
            steps=steps,
            family=FLUX_DEV,
            flow=FlowSchedule(flow.linear, flow.mu),
        )

    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(scheduler_config),
        vae=None,
        text_encoder=None,
        tokenizer=None,
        text_encoder_2=None,
        tokenizer_2=None,
        transformer=model,
    )
    pipe.vae_scale_factor = 8
    pipe.set_progress_bar_config(disable=True)

    def pipeline() -> Any:
        return pipe(
            prompt_embeds=embeds.to(device, dtype),
            pooled_prompt_embeds=pooled.to(device, dtype),
            height=size,
            width=size,
            num_inference_steps=steps,
            guidance_scale=3.5,
            output_type="latent",
            latents=FluxPipeline._pack_latents(noise, 1, 16, size // 8, size // 8).to(
                device, dtype
            ),
        ).images

    times: dict[str, list[float]] = {"easel": [], "pipeline": []}
    from easel.models.flux_denoiser import pack

    ours, theirs = easel(), pipeline()
    same = (pack(ours.float()) - theirs.float()).abs().max().item()
    for _ in range(args.repeats):
        for name, fn in (("easel", easel), ("pipeline", pipeline)):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)

    from torch.utils.flop_counter import FlopCounterMode

    from easel.models.flux_denoiser import FluxNetwork

    network = FluxNetwork(model, model, FLUX_DEV)
    prepared = network.condition(cond, 1, device, dtype, pixel_size=(size, size))
    x = noise.to(device, dtype)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        network(x, torch.tensor([500.0], device=device), prepared)
    step_flops = float(counter.get_total_flops())

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    kind = "FLUX.1-dev size (12B)" if args.full else "tiny"
    print(f"Flux sampler on {name or device.type} ({platform.machine()}), {kind}, {args.dtype}")
    print(f"{size}x{size}, {steps} steps, guidance 3.5 (embedded), {args.repeats} runs each")
    print(f"one step: {step_flops / 1e12:.2f} TFLOP; max abs latent difference {same:.2e}")
    for side, values in times.items():
        seconds = statistics.median(values)
        its = steps / seconds
        line = f"{side:9s} median {seconds:.3f} s, {its:.2f} it/s"
        if peak is not None and device.type == "cuda":
            line += f", {step_flops * its / (peak * 1e12):.1%} of the bf16 peak ({peak:.0f} TF/s)"
        print(line)
    ratio = statistics.median(times["easel"]) / statistics.median(times["pipeline"])
    print(f"Easel / FluxPipeline time: {ratio:.3f}")
    if device.type == "cuda":
        print(f"peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
