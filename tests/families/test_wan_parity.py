"""ChronoEdit (a Wan 2.1 image-to-video transformer) from ComfyUI's split files (the transformer
in the original Wan layout, UMT5, the Wan 2.1 VAE, a CLIP vision tower) through Easel's nodes in
the shape of ComfyUI's image_chrono_edit_14B template (CLIPVisionEncode, WanImageToVideo of 5
frames, ModelSamplingSD3, ScaleROPE with scale_t 7, KSampler, VAEDecode, ImageFromBatch of the
last frame) gives diffusers' ChronoEditPipeline image with temporal reasoning off (CPU fp32,
tiny random weights, max abs pixel difference 1e-3).

Fitted to the tiny models: the pipeline is handed Easel's noise; both sample with flow Euler at
shift 5 (the template's uni_pc has no FlowMatch twin in diffusers with the same steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, image_of
from tests.fixtures import wan_family

wan_models = wan_family.wan_models
wan_manager = wan_family.wan_manager
run_wan = wan_family.run_wan
SIZE = wan_family.SIZE

TOLERANCE = 1e-3
PROMPT = "make the circle red"
NEGATIVE = "blurry"
LENGTH = 5  # ChronoEdit without temporal reasoning: the input and the edit, 5 frames
STEPS = 3
CFG = 4.0


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    generator = torch.Generator().manual_seed(11)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    path = tmp_path_factory.mktemp("wan-input") / "input.png"
    Image.fromarray(pixels, "RGB").save(path)
    return path


def workflow(picture: Path, *, scale_t: float = 7.0, steps: int = STEPS) -> dict[str, Any]:
    """The template's graph at the test's size: UNETLoader, CLIPLoader type wan, VAELoader,
    CLIPVisionLoader, LoadImage, CLIPVisionEncode (crop none), CLIPTextEncode x2,
    WanImageToVideo, ModelSamplingSD3, ScaleROPE, KSampler, VAEDecode, ImageFromBatch."""
    names = {kind: Path(name).name for kind, name in wan_family.FILES.items()}
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": names["transformer"], "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": names["text_encoder"], "type": "wan"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": names["vae"]}},
        "cv": {"type": "CLIPVisionLoader", "inputs": {"name": names["clip_vision"]}},
        "img": {"type": "LoadImage", "inputs": {"image": str(picture)}},
        "cve": {
            "type": "CLIPVisionEncode",
            "inputs": {
                "clip_vision": ["cv", "clip_vision"],
                "image": ["img", "image"],
                "crop": "none",
            },
        },
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": NEGATIVE}},
        "i2v": {
            "type": "WanImageToVideo",
            "inputs": {
                "positive": ["pos", "conditioning"],
                "negative": ["neg", "conditioning"],
                "vae": ["vae", "vae"],
                "width": SIZE,
                "height": SIZE,
                "length": LENGTH,
                "batch_size": 1,
                "clip_vision_output": ["cve", "clip_vision_output"],
                "start_image": ["img", "image"],
            },
        },
        "shift": {"type": "ModelSamplingSD3", "inputs": {"model": ["unet", "model"], "shift": 5.0}},
        "rope": {
            "type": "ScaleROPE",
            "inputs": {"model": ["shift", "model"], "scale_t": scale_t},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["rope", "model"],
                "positive": ["i2v", "positive"],
                "negative": ["i2v", "negative"],
                "latent": ["i2v", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": CFG,
                "sampler_name": "euler",
                "scheduler": "normal",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
        "last": {
            "type": "ImageFromBatch",
            "inputs": {"image": ["dec", "image"], "index": LENGTH - 1, "length": 1},
        },
    }


def reference(pipe: Any, picture: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """ChronoEditPipeline's edited image (the last of its 5 frames) from Easel's noise. Its
    prompt cleaning runs ftfy (not installed here), a no-op on the tests' plain ASCII prompts."""
    from diffusers.pipelines.chronoedit import pipeline_chronoedit
    from PIL import Image

    monkeypatch.setattr(pipeline_chronoedit, "basic_clean", lambda text: text.strip())

    pipe.set_progress_bar_config(disable=True)
    frames = 1 + (LENGTH - 1) // 4
    noise = torch.randn(
        (1, 16, frames, SIZE // 8, SIZE // 8), generator=torch.Generator("cpu").manual_seed(42)
    )
    with torch.no_grad():
        video = pipe(
            image=Image.open(picture).convert("RGB"),
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=CFG,
            latents=noise,
            enable_temporal_reasoning=False,
            output_type="np",
        ).frames
    return as_tensor(video[0][-1:])


def test_chrono_edit_split_files_equal_chrono_edit_pipeline(
    wan_models: Any, run_wan: Any, picture: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_wan(workflow(picture), ["last", "dec"])
    ours = image_of(result, "last")
    assert image_of(result, "dec").shape == (LENGTH, 3, SIZE, SIZE)  # the whole video decoded
    theirs = reference(wan_models.pipe, picture, monkeypatch)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


@pytest.mark.slow
def test_without_scale_rope_the_frames_are_neighbours(
    wan_models: Any, run_wan: Any, picture: Path
) -> None:
    """Without ScaleROPE's temporal spacing the model is plain Wan 2.1 image-to-video (frames
    at rope positions 0 and 1): a different image from ChronoEdit's (positions 0 and 7)."""
    spaced = image_of(run_wan(workflow(picture), ["last"]), "last")
    plain = image_of(run_wan(workflow(picture, scale_t=1.0), ["last"]), "last")
    assert (spaced - plain).abs().max().item() > 1e-3


@pytest.mark.slow
def test_diffusers_folder_gives_the_pipeline_image(
    wan_models: Any, picture: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved ChronoEditPipeline folder loads with CheckpointLoader (its transformer class,
    UMT5 and tokenizer, the Wan VAE) and, with the CLIP vision file beside it, gives its
    image."""
    import shutil

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    wan_models.pipe.save_pretrained(str(tmp_path / "chronoedit"), safe_serialization=True)
    vision = wan_family.FILES["clip_vision"]
    (tmp_path / vision).parent.mkdir(parents=True)
    shutil.copyfile(wan_models.root / "models" / vision, tmp_path / vision)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = workflow(picture)
    for name in ("unet", "clip", "vae"):
        del nodes[name]
    nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": "chronoedit"}}
    nodes["pos"]["inputs"]["clip"] = nodes["neg"]["inputs"]["clip"] = ["ckpt", "clip"]
    nodes["shift"]["inputs"]["model"] = ["ckpt", "model"]
    for name in ("i2v", "dec"):
        nodes[name]["inputs"]["vae"] = ["ckpt", "vae"]
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["last"],
        keep_values=True,
    )
    ours = image_of(result, "last")
    theirs = reference(wan_models.pipe, picture, monkeypatch)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_wan_text_encoder_refusals_name_the_file(
    wan_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLIPLoader type wan refuses a file that is not UMT5, and a UMT5 file whose tokenizer is
    nowhere (no spiece_model read, no folder configured, an empty Hugging Face cache), naming
    the file and where it looked."""
    from easel.models import family_files
    from easel.models.errors import ModelError
    from easel.models.manager import ModelManager

    models = wan_models.root / "models"
    manager = ModelManager([models], device="cpu", dtype=torch.float32)
    vae = models / wan_family.FILES["vae"]
    with pytest.raises(ModelError, match=r"wan_2\.1_vae\.safetensors is not a UMT5 text encoder"):
        family_files.load_clip("wan", "vae", [vae], manager)
    monkeypatch.delenv("EASEL_UMT5_TOKENIZER", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    text = models / wan_family.FILES["text_encoder"]
    with pytest.raises(ModelError) as failure:
        family_files.load_clip("wan", "umt5", [text], manager)
    message = str(failure.value)
    assert text.name in message and "no UMT5 tokenizer" in message
    assert "EASEL_UMT5_TOKENIZER" in message and "spiece_model" in message


@pytest.mark.slow
def test_scaled_fp8_umt5_file_encodes_with_its_scaled_weights(
    wan_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's umt5_xxl_fp8_e4m3fn_scaled layout (fp8 weights, `.scale_weight` per layer, a
    `scaled_fp8` marker) encodes as the same encoder with its weights multiplied out."""
    from safetensors.torch import load_file, save_file

    from easel.models import family_files, wan_text
    from easel.models.manager import ModelManager

    monkeypatch.setenv("EASEL_UMT5_TOKENIZER", str(wan_models.tokenizer_folder))
    state = load_file(str(wan_models.root / "models" / wan_family.FILES["text_encoder"]))
    scaled, plain = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, {}
    for key, value in state.items():
        if key.endswith(".weight") and value.dim() == 2 and "relative_attention_bias" not in key:
            scale = value.abs().max() / 448.0
            stored = (value / scale).to(torch.float8_e4m3fn)
            scaled[key], scaled[key[: -len("weight")] + "scale_weight"] = stored, scale.reshape(1)
            plain[key] = stored.float() * scale
        else:
            scaled[key] = plain[key] = value
    path = tmp_path / "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
    save_file(scaled, str(path))
    save_file(plain, str(tmp_path / "umt5_plain.safetensors"))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    encoded = [
        wan_text.encode(family_files.load_clip("wan", name, [tmp_path / name], manager), PROMPT)[0]
        for name in (path.name, "umt5_plain.safetensors")
    ]
    assert torch.equal(encoded[0]["embeds"], encoded[1]["embeds"])
    assert float(encoded[0]["embeds"].abs().max()) > 0


@pytest.mark.slow
def test_lora_in_comfyui_wan_keys_equals_merged_weights(
    wan_models: Any, run_wan: Any, picture: Path, tmp_path: Path
) -> None:
    """The template's LoraLoaderModelOnly (its distill LoRA, switched on): a LoRA in the original
    Wan keys (`diffusion_model.blocks.N.self_attn.q.lora_down / lora_up`, read by diffusers'
    Wan LoRA conversion) gives the image of the same run on the file with the LoRA merged."""
    from safetensors.torch import load_file, save_file

    generator = torch.Generator().manual_seed(5)
    models = wan_models.root / "models"
    state = load_file(str(models / wan_family.FILES["transformer"]))
    lora, rank = {}, 4
    for target in ("self_attn.q", "cross_attn.k", "ffn.0"):
        key = f"model.diffusion_model.blocks.0.{target}.weight"
        out, width = state[key].shape
        down = torch.randn(rank, width, generator=generator) * 0.1
        up = torch.randn(out, rank, generator=generator) * 0.1
        lora[f"diffusion_model.blocks.0.{target}.lora_down.weight"] = down
        lora[f"diffusion_model.blocks.0.{target}.lora_up.weight"] = up
        state[key] = state[key] + 0.5 * up @ down  # strength 0.5, alpha = rank
    (models / "loras").mkdir(exist_ok=True)
    save_file(lora, str(models / "loras" / "wan_test_lora.safetensors"))
    merged = "chrono_edit_merged.safetensors"
    save_file(state, str(models / "diffusion_models" / merged))
    try:
        nodes = workflow(picture)
        nodes["lora"] = {
            "type": "LoraLoaderModelOnly",
            "inputs": {
                "model": ["rope", "model"],
                "name": "wan_test_lora.safetensors",
                "strength_model": 0.5,
            },
        }
        nodes["k"]["inputs"]["model"] = ["lora", "model"]
        with_lora = image_of(run_wan(nodes, ["last"]), "last")
        nodes = workflow(picture)
        nodes["unet"]["inputs"]["name"] = merged
        merged_image = image_of(run_wan(nodes, ["last"]), "last")
        plain = image_of(run_wan(workflow(picture), ["last"]), "last")
    finally:
        (models / "loras" / "wan_test_lora.safetensors").unlink()
        (models / "diffusion_models" / merged).unlink()
    assert (with_lora - plain).abs().max().item() > 1e-3
    assert (with_lora - merged_image).abs().max().item() <= 1e-4


def test_wan_image_to_video_refuses_sizes_naming_the_input(run_wan: Any) -> None:
    """A side that is no multiple of 16 names width; a video over the resource budget names
    length."""
    base = {
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": Path(wan_family.FILES["text_encoder"]).name, "type": "wan"},
        },
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "vae": {"type": "VAELoader", "inputs": {"name": Path(wan_family.FILES["vae"]).name}},
    }
    for size, length, named in ((40, 5, "width"), (4096, 1025, "length")):
        nodes = {
            **base,
            "i2v": {
                "type": "WanImageToVideo",
                "inputs": {
                    "positive": ["pos", "conditioning"],
                    "negative": ["pos", "conditioning"],
                    "vae": ["vae", "vae"],
                    "width": size,
                    "height": size,
                    "length": length,
                },
            },
        }
        result = run_wan(nodes, ["i2v"])
        assert result.status != "succeeded"
        [failure] = [f for f in result.failures if f.node == "i2v"]
        assert failure.input == named, failure
