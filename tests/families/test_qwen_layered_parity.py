"""Qwen-Image-Layered from ComfyUI's split files (the transformer with its addition_t_embedding,
Qwen2.5-VL, the RGBA Qwen VAE) through Easel's nodes, in the shape of ComfyUI's
image_qwen_image_layered template (VAEEncode -> ReferenceLatent on both sides,
EmptyQwenImageLayeredLatentImage, KSampler with true CFG, LatentCut + LatentCutToBatch,
VAEDecode), gives diffusers' QwenImageLayeredPipeline layers (CPU fp32, tiny random weights,
max abs pixel difference 1e-3 over all four channels).

The pipeline resizes the input to a 640x640 area first; the test sets its size rule to the
input's own 64x64 (as the Edit tests do), so what is compared is the encoding, the sampling
and the decoding. Both sample with a fixed shift of 1 (ComfyUI's templates set it with
ModelSamplingAuraFlow 1; the pipeline's scheduler here has dynamic shifting off). Easel keeps
ComfyUI's latent layout [B, C, frames, h, w]; the pipeline gets the same noise packed in its
own (B, frames, C, h, w) order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE
from tests.fixtures import qwen_image_family as qf

TOLERANCE = 1e-3
PROMPT = "a red circle on a blue square"
NEGATIVE = "blurry"
LAYERS = 2
STEPS = 3
CFG = 2.5


@dataclass(frozen=True)
class Built:
    pipe: Any  # QwenImageLayeredPipeline
    root: Path
    image: Path


def _transformer() -> Any:
    from diffusers import QwenImageTransformer2DModel

    model = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=qf.HEAD,
        num_attention_heads=1,
        joint_attention_dim=qf.TEXT_WIDTH,
        axes_dims_rope=(16, 56, 56),
        use_additional_t_cond=True,
        use_layer3d_rope=True,
    )
    with torch.no_grad():  # random weights throughout (the output layers too)
        for module in (model.proj_out, model.norm_out.linear):
            module.weight.normal_(0, 0.02)
        model.time_text_embed.addition_t_embedding.weight.normal_(0, 0.5)
    return model.eval()


def _vae() -> Any:
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        temperal_downsample=[False, True, True],
        input_channels=4,
    ).eval()


def build(root: Path) -> Built:
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImageLayeredPipeline
    from PIL import Image
    from safetensors.torch import save_file

    from easel.models.families.qwen_image import PROMPT_TEMPLATE
    from easel.models.qwen_text import processor, template_tokens

    folder = qf.write_tokenizer(root / "ComfyUI" / "comfy" / "text_encoders" / "qwen25_tokenizer")
    (root / "ComfyUI" / "main.py").write_text("# a ComfyUI install, for the tests\n")
    tokenizer = qf._tokenizer(folder)
    torch.manual_seed(qf.SEED)
    text_encoder = qf._text_encoder(tokenizer)
    transformer = _transformer()
    vae = _vae()
    pipe = QwenImageLayeredPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=processor(tokenizer),
        transformer=transformer,
    )
    pipe.prompt_template_encode_start_idx = template_tokens(tokenizer, PROMPT_TEMPLATE)
    pipe.set_progress_bar_config(disable=True)
    models = root / "models"
    for kind in ("diffusion_models", "text_encoders", "vae"):
        (models / kind).mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in transformer.state_dict().items()},
        str(models / "diffusion_models" / "qwen_image_layered.safetensors"),
    )
    save_file(
        qf.text_encoder_file(text_encoder),
        str(models / "text_encoders" / "qwen_2.5_vl_7b.safetensors"),
    )
    save_file(qf.vae_file(vae), str(models / "vae" / "qwen_image_layered_vae.safetensors"))
    generator = torch.Generator().manual_seed(1)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8).numpy()
    image = root / "input.png"
    Image.fromarray(pixels, "RGB").save(image)
    return Built(pipe, root, image)


@pytest.fixture(scope="module")
def layered() -> Any:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="qwen-layered-") as folder:
        yield build(Path(folder))


@pytest.fixture
def run_layered(layered: Built, monkeypatch: pytest.MonkeyPatch) -> Any:
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [layered.root / "models", layered.root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(p) for p in roots))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})

    def run(nodes: dict[str, Any], targets: list[str]) -> Any:
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return executor.run(workflow, targets=targets, keep_values=True)

    return run


def layered_workflow(
    image: Path, *, cfg: float = CFG, seed: int = 42, steps: int = STEPS
) -> dict[str, Any]:
    """The image_qwen_image_layered template's "Image to Layers" subgraph."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "qwen_image_layered.safetensors", "weight_dtype": "default"},
        },
        "shift": {
            "type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["unet", "model"], "shift": 1.0},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_2.5_vl_7b.safetensors", "type": "qwen_image"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "qwen_image_layered_vae.safetensors"}},
        "img": {"type": "LoadImage", "inputs": {"image": str(image)}},
        "enc": {"type": "VAEEncode", "inputs": {"vae": ["vae", "vae"], "image": ["img", "image"]}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": NEGATIVE}},
        "refp": {
            "type": "ReferenceLatent",
            "inputs": {"conditioning": ["pos", "conditioning"], "latent": ["enc", "latent"]},
        },
        "refn": {
            "type": "ReferenceLatent",
            "inputs": {"conditioning": ["neg", "conditioning"], "latent": ["enc", "latent"]},
        },
        "lat": {
            "type": "EmptyQwenImageLayeredLatentImage",
            "inputs": {"width": SIZE, "height": SIZE, "layers": LAYERS, "batch_size": 1},
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["shift", "model"],
                "positive": ["refp", "conditioning"],
                "negative": ["refn", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "cut": {
            "type": "LatentCut",
            "inputs": {"samples": ["k", "latent"], "dim": "t", "index": 1, "amount": 16384},
        },
        "batch": {
            "type": "LatentCutToBatch",
            "inputs": {"samples": ["cut", "latent"], "dim": "t", "slice_size": 1},
        },
        "dec": {
            "type": "VAEDecode",
            "inputs": {"vae": ["vae", "vae"], "latent": ["batch", "latent"]},
        },
    }


def reference(layered: Built, monkeypatch: pytest.MonkeyPatch, *, seed: int = 42) -> Any:
    """The pipeline's layers for the same input, prompts and noise, as [L, 4, H, W]."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_layered
    from PIL import Image

    monkeypatch.setattr(
        pipeline_qwenimage_layered, "calculate_dimensions", lambda a, r: (SIZE, SIZE)
    )
    pipe = layered.pipe
    shape = (1, 16, LAYERS + 1, SIZE // 8, SIZE // 8)  # Easel's (ComfyUI's) layout
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    packed = pipe._pack_latents(noise.permute(0, 2, 1, 3, 4), 1, 16, *shape[3:], LAYERS + 1)
    image = Image.open(layered.image).convert("RGBA")
    with torch.no_grad():
        out = pipe(
            image=image,
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            true_cfg_scale=CFG,
            layers=LAYERS,
            num_inference_steps=STEPS,
            latents=packed,
            output_type="np",
        ).images[0]
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def test_layered_split_files_equal_qwen_image_layered_pipeline(
    layered: Built, run_layered: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run_layered(layered_workflow(layered.image), ["dec"])
    assert result.status == "succeeded", result.failures
    ours = result.values["dec"]["image"]
    theirs = reference(layered, monkeypatch)
    assert ours.shape == theirs.shape == (LAYERS, 4, SIZE, SIZE)
    assert float(ours.std()) > 0.01
    error = (ours - theirs).abs().max().item()
    print(f"Qwen-Image-Layered parity: max abs pixel difference {error:.2e}")
    assert error <= TOLERANCE


TEMPLATE_FILES = {  # the file names ComfyUI's image_qwen_image_layered template loads
    "diffusion_models/qwen_image_layered_bf16.safetensors": "qwen_image_layered.safetensors",
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": "qwen_2.5_vl_7b.safetensors",
    "vae/qwen_image_layered_vae.safetensors": "qwen_image_layered_vae.safetensors",
}


def test_layered_template_runs_and_equals_the_pipeline(
    layered: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's image_qwen_image_layered template (its Image to Layers subgraph; the Text to
    Layers one is muted there) runs end to end on the tiny models saved under the template's
    file names, at the input's 64x64 and 2 steps, and saves the pipeline's RGBA layers for the
    template's prompt, seed, cfg 2.5 and empty negative."""
    import importlib.util
    import json
    import os
    import shutil

    import numpy as np
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    spec = importlib.util.find_spec("comfyui_workflow_templates_json")
    assert spec is not None and spec.origin is not None, "the templates corpus (dev extra)"
    path = Path(spec.origin).parent / "templates" / "image_qwen_image_layered.json"
    models = tmp_path / "models"
    for name, source in TEMPLATE_FILES.items():
        kind, _ = name.split("/")
        (models / kind).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(layered.root / "models" / kind / source, models / name)
    roots = [models, layered.root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(json.loads(path.read_text(encoding="utf-8")))
    nodes = workflow["nodes"]
    only = {n["type"]: i for i, n in nodes.items()}
    set_input(workflow, f"{only['LoadImage']}.image", str(layered.image))
    set_input(workflow, f"{only['ResizeImageMask']}.longer_size", SIZE)
    sampler = nodes[only["KSampler"]]["inputs"]
    set_input(workflow, f"{only['KSampler']}.steps", 2)
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out")
    assert result.ok, result.failures
    files = sorted(f for entry in result.ui.values() for f in entry.get("files", []))
    assert len(files) == LAYERS
    saved = [np.asarray(PILImage.open(tmp_path / "out" / f)).copy() for f in files]
    ours = torch.from_numpy(np.stack(saved)).permute(0, 3, 1, 2).float() / 255

    from diffusers.pipelines.qwenimage import pipeline_qwenimage_layered

    monkeypatch.setattr(
        pipeline_qwenimage_layered, "calculate_dimensions", lambda a, r: (SIZE, SIZE)
    )
    pipe, seed = layered.pipe, int(sampler["seed"])
    shape = (1, 16, LAYERS + 1, SIZE // 8, SIZE // 8)
    noise = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))
    with torch.no_grad():
        theirs = pipe(
            image=PILImage.open(layered.image).convert("RGBA"),
            prompt=nodes[only["String"]]["inputs"]["value"],
            negative_prompt="",
            true_cfg_scale=float(sampler["cfg"]),
            layers=LAYERS,
            num_inference_steps=2,
            max_sequence_length=1024,  # the template's prompt is longer than the default 512
            latents=pipe._pack_latents(noise.permute(0, 2, 1, 3, 4), 1, 16, 8, 8, LAYERS + 1),
            output_type="np",
        ).images[0]
    theirs = torch.from_numpy(theirs).permute(0, 3, 1, 2)
    assert ours.shape == theirs.shape == (LAYERS, 4, SIZE, SIZE)
    # the saved PNGs are 8-bit: half a step of rounding on top of the parity tolerance
    assert (ours - theirs).abs().max().item() <= TOLERANCE + 0.5 / 255


def test_text_to_layers_rope_keeps_every_frame_a_layer(layered: Built) -> None:
    """Without a reference image, frame f keeps rope index f (diffusers' layered rope alone
    would take the last frame for the condition image) and the text keeps its positions."""
    from easel.models.qwen_layered_denoiser import frames_only

    rope = layered.pipe.transformer.pos_embed
    frames = [(1, 4, 4)] * (LAYERS + 1)
    with_image, text = rope([[*frames, (1, 4, 4)]], 7, device="cpu")
    alone, _ = rope([frames], 7, device="cpu")
    with frames_only(layered.pipe.transformer, True):
        ours, our_text = rope([frames], 7, device="cpu")
    tokens = 16 * (LAYERS + 1)
    assert torch.equal(ours, with_image[:tokens]) and torch.equal(our_text, text)
    assert not torch.equal(alone[-16:], with_image[tokens - 16 : tokens])
    assert "forward" not in vars(rope)  # the patch is gone afterwards


@pytest.mark.slow
def test_diffusers_folder_gives_the_pipeline_layers(
    layered: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CheckpointLoader on a saved QwenImageLayeredPipeline folder gives the pipeline's layers
    (the Layered family, with the fixed shift the tests give the pipeline too)."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    layered.pipe.save_pretrained(str(tmp_path / "qwen-layered"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = layered_workflow(layered.image)
    for name in ("unet", "clip", "vae"):
        del nodes[name]
    nodes["ckpt"] = {"type": "CheckpointLoader", "inputs": {"name": "qwen-layered"}}
    nodes["shift"]["inputs"]["model"] = ["ckpt", "model"]
    for name in ("pos", "neg"):
        nodes[name]["inputs"]["clip"] = ["ckpt", "clip"]
    for name in ("enc", "dec"):
        nodes[name]["inputs"]["vae"] = ["ckpt", "vae"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    result = executor.run(workflow, targets=["dec"], keep_values=True)
    assert result.status == "succeeded", result.failures
    ours = result.values["dec"]["image"]
    theirs = reference(layered, monkeypatch)
    assert ours.shape == theirs.shape == (LAYERS, 4, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_a_plain_latent_is_refused_with_the_node_to_use(layered: Built, run_layered: Any) -> None:
    nodes = layered_workflow(layered.image)
    nodes["lat"] = {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}}
    result = run_layered(nodes, ["k"])
    assert result.status != "succeeded"
    assert "EmptyQwenImageLayeredLatentImage" in str(result.failures)
