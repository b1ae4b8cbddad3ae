"""MiniMax H3 on tiny random weights, CPU fp32: Easel's nodes, loading ComfyUI's split files
(the DiT, the Qwen3-VL text encoder, the video VAE), against diffusers' MiniMax H3 components
called as MiniMaxH3ModularPipeline calls them for one latent frame (the pipeline itself
generates 5 to 15 seconds of video only): the prompt's `hidden_states[50]`, the packed
`[text | audio | video]` layout and per-row timesteps of its layout and timestep steps, the
transformer, MiniMaxH3Scheduler stepping video (shift 12) and audio (shift 3) with Euler, and
the VAE's decoder on the one latent frame (its last decoded frame, ImageNet-normalised).

Easel's run is TextEncode + RandomNoise + BasicGuider + KSamplerSelect euler + ManualSigmas
(the video scheduler's levels) + SamplerCustomAdvanced + SeparateAVLatent + VAEDecode. The audio
stream starts from the noise Easel's adapter draws (easel.models.minimax_denoiser.audio_noise),
given to the reference as the pipeline takes caller-given latents.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.fixtures import minimax_family
from tests.fixtures.minimax_family import FILES, SIZE

minimax_models = minimax_family.minimax_models
run_minimax = minimax_family.run_minimax

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
SEED = 5
STEPS = 4  # the scheduler's grid points, the terminal 0 included: 3 transformer calls


def video_sigmas(points: int) -> Any:
    from diffusers import MiniMaxH3Scheduler

    scheduler = MiniMaxH3Scheduler(shift=12.0)
    scheduler.set_timesteps(points)
    return scheduler.sigmas


def workflow(
    transformer: str, sigmas: Any, lora: float | None = None, size: tuple[int, int] = (SIZE, SIZE)
) -> dict[str, Any]:
    levels = ", ".join(repr(float(v)) for v in sigmas)
    model: list[Any] = ["unet", "model"]
    nodes: dict[str, Any] = {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": transformer}},
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": FILES["text_encoder"], "type": "minimax"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": FILES["vae"]}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": size[0], "height": size[1]}},
        "noise": {"type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "sampler": {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "sigmas": {"type": "ManualSigmas", "inputs": {"sigmas": levels}},
        "k": {
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guider", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["sigmas", "sigmas"],
                "latent_image": ["lat", "latent"],
            },
        },
        "split": {"type": "SeparateAVLatent", "inputs": {"av_latent": ["k", "output"]}},
        "dec": {
            "type": "VAEDecode",
            "inputs": {"vae": ["vae", "vae"], "latent": ["split", "video_latent"]},
        },
    }
    if lora is not None:
        nodes["lora"] = {
            "type": "LoraLoaderModelOnly",
            "inputs": {"model": model, "name": FILES["lora"], "strength_model": lora},
        }
        model = ["lora", "model"]
    nodes["guider"] = {
        "type": "BasicGuider",
        "inputs": {"model": model, "conditioning": ["pos", "conditioning"]},
    }
    return nodes


def reference(built: Any, schedule: Any, seed: int = SEED, transformer: Any = None) -> Any:
    """The image diffusers' components make, called as the pipeline calls them: `schedule`
    is the number of grid points both schedulers make (the pipeline's way), or explicit video
    levels (the audio's then the same base points under shift 3)."""
    from diffusers import MiniMaxH3Scheduler
    from diffusers.modular_pipelines.minimax_h3.before_denoise import (
        MiniMaxH3PrepareLayoutStep,
        MiniMaxH3SetTimestepsStep,
        patchify_video_latents,
    )

    from easel.models.minimax_denoiser import audio_noise

    model = transformer or built.transformer
    ids = built.tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        out = built.text_encoder.model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            mm_token_type_ids=torch.zeros_like(input_ids),
            use_cache=False,
            output_hidden_states=True,
        )
    prompt_embeds = out.hidden_states[50]
    side = SIZE // 16
    noise = torch.randn(
        (1, 24, side, side), generator=torch.Generator("cpu").manual_seed(seed)
    )
    audio_latents = 2  # the pipeline's count for one frame at 24 fps
    layout = MiniMaxH3PrepareLayoutStep.build_packed_sequence(
        torch.full((len(ids),), 1, dtype=torch.long), 1, side, side, audio_latents,
        (1, 2, 2), 2, 2, 0,
    )
    position_ids, token_tags, video_idx, audio_idx, text_idx, _, _ = layout
    latents = patchify_video_latents(noise[:, :, None], (1, 2, 2))
    audio = audio_noise(noise, 2 * audio_latents, 32)[0]
    video_scheduler, audio_scheduler = MiniMaxH3Scheduler(12.0), MiniMaxH3Scheduler(3.0)
    if isinstance(schedule, int):
        video_scheduler.set_timesteps(schedule)
        audio_scheduler.set_timesteps(schedule)
    else:
        video_scheduler.set_timesteps(sigmas=schedule)
        base = schedule.double() / (12.0 + schedule.double() * (1.0 - 12.0))
        audio_scheduler.set_timesteps(sigmas=(3.0 * base / (1.0 + 2.0 * base)).float())
    with torch.no_grad():
        for t, t_audio in zip(video_scheduler.timesteps, audio_scheduler.timesteps, strict=True):
            unique, indices = MiniMaxH3SetTimestepsStep.build_row_timesteps(
                video_idx, audio_idx, 0, 0, len(ids), float(t), float(t_audio),
                max(float(t), 0.999), 1.0,
            )
            video_pred, audio_pred = model(
                hidden_states=latents[None],
                audio_hidden_states=audio[None],
                encoder_hidden_states=prompt_embeds,
                timestep=unique,
                timestep_indices=indices,
                token_tags=token_tags,
                position_ids=position_ids,
                video_indices=video_idx,
                audio_indices=audio_idx,
                text_indices=text_idx,
                return_dict=False,
            )
            latents = video_scheduler.step(video_pred[0].float(), t, latents, return_dict=False)[0]
            stepped = audio_scheduler.step(audio_pred[0].float(), t_audio, audio, return_dict=False)
            audio = stepped[0]
        # rows -> [1, 24, 1, h, w] (the layout step's patch order), then the VAE's one frame
        z = latents.reshape(1, side // 2, side // 2, 24, 2, 2).permute(0, 3, 1, 4, 2, 5)
        z = z.reshape(1, 24, side, side)[:, :, None]
        vae = built.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
        frames = vae.decoder(vae.post_quant_conv(z * std + mean))
    pixels = frames[:, :, -1]
    imagenet_mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    imagenet_std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return (pixels * imagenet_std + imagenet_mean).clamp(0, 1)


def test_split_files_equal_minimax_h3_components(minimax_models: Any, run_minimax: Any) -> None:
    sigmas = video_sigmas(STEPS)
    result = run_minimax(workflow(FILES["transformer"], sigmas), ["dec"])
    assert result.ok, result.failures
    ours = result.values["dec"]["image"]
    theirs = reference(minimax_models, STEPS)
    assert ours.shape == (1, 3, SIZE, SIZE)
    diff = (ours - theirs).abs().max().item()
    print(f"MiniMax H3: max abs pixel difference {diff:.2e}")
    assert float(theirs.std()) > 0.01
    assert diff <= TOLERANCE
    audio = result.values["split"]["audio_latent"]["samples"]
    assert tuple(audio.shape) == (1, 32, 2, 0)  # an image keeps no soundtrack


@pytest.mark.slow
def test_turbo_lora_in_comfyui_keys_reaches_the_dit(minimax_models: Any, run_minimax: Any) -> None:
    """LoraLoaderModelOnly with a LoRA in ComfyUI's keys (`diffusion_model.blocks.N.attn.
    out_proj`, converted by diffusers' MiniMax H3 LoRA converter): the image is the one of the
    DiT with the LoRA merged into its weights (strength 0.5, no alpha: scale 1)."""
    import copy

    from safetensors.torch import load_file

    lora = load_file(str(minimax_models.root / "models" / "loras" / FILES["lora"]))
    merged = copy.deepcopy(minimax_models.transformer)
    for index, block in enumerate(merged.transformer_blocks):
        stem = f"diffusion_model.blocks.{index}.attn.out_proj"
        delta = lora[stem + ".lora_B.weight"] @ lora[stem + ".lora_A.weight"]
        block.attn.to_out[0].weight.data += 0.5 * delta
    sigmas = video_sigmas(STEPS)
    result = run_minimax(workflow(FILES["transformer"], sigmas, lora=0.5), ["dec"])
    assert result.ok, result.failures
    ours = result.values["dec"]["image"]
    theirs = reference(minimax_models, STEPS, transformer=merged)
    plain = reference(minimax_models, STEPS)
    diff = (ours - theirs).abs().max().item()
    print(f"MiniMax H3 LoRA: max abs pixel difference {diff:.2e}")
    assert (theirs - plain).abs().max().item() > 10 * TOLERANCE  # the LoRA changes the image
    assert diff <= TOLERANCE


@pytest.mark.slow
def test_vae_encode_gives_the_vaes_normalised_latent(minimax_models: Any) -> None:
    """The VAE file's wrapper encodes as VAEEncode calls it ([-1, 1] in): the posterior mean of
    the one frame (the VAE's own encode, ImageNet-normalised pixels in), normalised with the
    file's latents_mean / std."""
    from safetensors.torch import load_file

    from easel.models.vae_files import load_vae_file

    path = minimax_models.root / "models" / "vae" / FILES["vae"]
    wrapper = load_vae_file(path, load_file(str(path)), torch.float32)
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = wrapper.encode(image * 2 - 1).latent_dist.mode()
    vae = minimax_models.vae
    mean = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    with torch.no_grad():
        moments = vae.encode(((image - mean) / std)[:, :, None]).latent_dist.mode()[:, :, -1]
    lmean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1)
    lstd = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1)
    theirs = (moments - lmean) / lstd
    assert ours.shape == (1, 24, SIZE // 16, SIZE // 16)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_awq_text_encoder_is_refused_naming_the_file(tmp_path: Any, monkeypatch: Any) -> None:
    """The template's qwen3vl_32b_minimax_h3_nvfp4_awq file: refused, naming it and the
    drop-in int8 ConvRot file, before anything is read."""
    import os

    from safetensors.torch import save_file

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    folder = tmp_path / "models" / "text_encoders"
    folder.mkdir(parents=True)
    name = "qwen3vl_32b_minimax_h3_nvfp4_awq.safetensors"
    save_file(
        {
            "model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4),
            "model.layers.0.self_attn.q_proj.awq_scale": torch.ones(4),
        },
        str(folder / name),
    )
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path / "models"))
    manager = ModelManager([tmp_path / "models"], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = {"clip": {"type": "TextEncoderLoader", "inputs": {"name": name, "type": "minimax"}}}
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    result = executor.run(workflow, targets=["clip"])
    assert not result.ok
    message = str(result.failures)
    assert name in message and "AWQ" in message and "int8_convrot" in message
    assert os.environ["EASEL_MODELS_DIR"]


@pytest.mark.slow
def test_odd_latent_sizes_are_padded_to_whole_patches(run_minimax: Any) -> None:
    """80 x 48 pixels: a 5 x 3 latent, padded to 2x2 patches as ComfyUI pads it and cropped
    back (the pipeline takes multiples of 32 only: no reference)."""
    nodes = workflow(FILES["transformer"], video_sigmas(STEPS), size=(80, 48))
    result = run_minimax(nodes, ["dec"])
    assert result.ok, result.failures
    image = result.values["dec"]["image"]
    assert image.shape == (1, 3, 48, 80)
    assert bool(torch.isfinite(image).all()) and float(image.std()) > 0.01


@pytest.mark.slow
def test_text_encoder_cut_after_layer_50_encodes_as_the_full_one(
    minimax_models: Any, tmp_path: Any
) -> None:
    """ComfyUI's MiniMax H3 text encoder files stop after decoder layer 50, without the final
    norm: the same conditioning as the full model's."""
    from safetensors.torch import load_file, save_file

    from easel.models import minimax_loading, minimax_text
    from easel.models.manager import ModelManager

    models = minimax_models.root / "models"
    full = load_file(str(models / "text_encoders" / FILES["text_encoder"]))
    cut = {
        k: v
        for k, v in full.items()
        if not k.startswith("model.layers.50.") and k != "model.norm.weight"
    }
    folder = tmp_path / "text_encoders"
    folder.mkdir()
    save_file(cut, str(folder / "qwen3vl_32b_minimax_h3_cut.safetensors"))
    roots = [models, tmp_path, minimax_models.root / "ComfyUI"]
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    encoded = []
    paths = (
        models / "text_encoders" / FILES["text_encoder"],
        folder / "qwen3vl_32b_minimax_h3_cut.safetensors",
    )
    for path in paths:
        clip = minimax_loading.minimax_clip("c", [path], manager)
        encoded.append(minimax_text.encode_prompts(clip, {"qwen3vl": PROMPT}).conditioning)
    assert torch.equal(encoded[0]["embeds"], encoded[1]["embeds"])
