"""ComfyUI's Marigold v2 templates (`image_marigold_v2_*_estimation` of the
`comfyui-workflow-templates-json` corpus, in the dev extra) run end to end on tiny models in
ComfyUI's layout: a Qwen-Image(-Edit) transformer (diffusion_models/), the task's LoRA in
Marigold's key layout (`diffusion_model.<module>.lora_A/B.weight`, no alphas), the task's VAE
(the Qwen-Image VAE in the Wan 2.1 layout) and the task's saved prompt (embeddings/, ComfyUI's
conditioning file), under the file names the templates load.

The reference is computed apart from Easel, on diffusers' modules and by hand: the LoRA merged
into a copy of the transformer's weights (W + B A), the image encoded by the VAE (its mode,
normalised by the latents' mean and std, as QwenImagePipeline does), packed by
QwenImagePipeline's own `_pack_latents`, one transformer call at the level 0.5 of the template's
ManualSigmas "0.5, 0", the result z - v (ComfyUI's IMG_TO_IMG_VELOCITY under one Euler step),
decoded, and post-processed in numpy. The template's int8 transformer file (ComfyUI's int8
ConvRot quantisation, which Easel does not read) is replaced by a float file of another name
through the subgraph's `unet_name` input; the int8 file itself is refused naming it."""

from __future__ import annotations

import copy
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.families.test_qwen_image_parity import TOLERANCE
from tests.families.workflows import template
from tests.fixtures import qwen_image_family

PACKAGE = "comfyui_workflow_templates_json"
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

SIZE = 16  # pixels: a 2x2 latent, one 2x2 patch
SEED = 11
RANK = 2
TOKENS = 6
UNET = "qwen_image_edit_2509.safetensors"  # the float stand-in for the template's int8 file
INT8_UNET = "qwen_image_edit_2509_int8_convrot.safetensors"
# the modules Marigold's adapters change (ComfyUI's comfy/marigold.py validates this list)
LORA_TARGETS = (
    "img_in",
    "txt_in",
    "norm_out.linear",
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "img_mlp.net.0.proj",
    "img_mlp.net.2",
    "txt_mlp.net.0.proj",
    "txt_mlp.net.2",
)
# each template's task: (its LoRA's and VAE's file stem, its conditioning file's stem, the
# prediction it post-processes)
TASKS = {
    "image_marigold_v2_depth_estimation": (
        "marigold_v2_depth_log_stage2",
        "marigold_v2_depth",
        "depth",
    ),
    "image_marigold_v2_surface_normal_estimation": (
        "marigold_v2_normals",
        "marigold_v2_normals",
        "normals",
    ),
    "image_marigold_v2_albedo_estimation": ("marigold_v2_albedo", "marigold_v2_albedo", "albedo"),
}


@dataclass(frozen=True)
class TinyMarigold:
    root: Path
    transformer: Any  # diffusers QwenImageTransformer2DModel
    vae: Any  # diffusers AutoencoderKLQwenImage
    loras: dict[str, dict[str, tuple[Any, Any]]]  # task stem -> module -> (A, B)
    prompts: dict[str, Any]  # task stem -> embeddings [1, T, D]


def lora_layers(transformer: Any, generator: Any) -> dict[str, tuple[Any, Any]]:
    """Random rank-RANK adapters for every module Marigold's LoRAs change."""
    layers = {}
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and name.endswith(LORA_TARGETS):
            down = torch.randn(RANK, module.in_features, generator=generator) * 0.1
            up = torch.randn(module.out_features, RANK, generator=generator) * 0.1
            layers[name] = (down, up)
    return layers


def build(root: Path) -> TinyMarigold:
    from safetensors.torch import save_file

    torch.manual_seed(qwen_image_family.SEED)
    transformer = qwen_image_family._transformer()
    vae = qwen_image_family._vae()
    models = root / "models"
    for kind in ("diffusion_models", "loras", "vae", "embeddings"):
        (models / kind).mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    save_file(state, str(models / "diffusion_models" / UNET))
    # the template's file: one weight stored as int8 with its scale, as quantised files are
    key = "transformer_blocks.0.attn.to_q.weight"
    scale = state[key].abs().amax(dim=1, keepdim=True) / 127
    quantised = {**state, key: torch.round(state[key] / scale).to(torch.int8)}
    save_file({**quantised, key + "_scale": scale}, str(models / "diffusion_models" / INT8_UNET))
    generator = torch.Generator().manual_seed(SEED)
    loras, prompts = {}, {}
    for stem, prompt, _ in TASKS.values():
        layers = lora_layers(transformer, generator)
        lora_file = {}
        for name, (down, up) in layers.items():
            lora_file[f"diffusion_model.{name}.lora_A.weight"] = down.contiguous()
            lora_file[f"diffusion_model.{name}.lora_B.weight"] = up.contiguous()
        save_file(lora_file, str(models / "loras" / f"{stem}.safetensors"))
        save_file(qwen_image_family.vae_file(vae), str(models / "vae" / f"{stem}_vae.safetensors"))
        embeds = torch.randn(1, TOKENS, qwen_image_family.TEXT_WIDTH, generator=generator)
        # ComfyUI's SaveConditioning layout: the embeddings and the plain options as metadata
        save_file(
            {"conditioning": embeds.to(torch.bfloat16).contiguous()},
            str(models / "embeddings" / f"{prompt}_conditioning.safetensors"),
            metadata={"conditioning_options": "{}"},
        )
        loras[stem], prompts[stem] = layers, embeds.to(torch.bfloat16).float()
    return TinyMarigold(root, transformer, vae, loras, prompts)


def workflow(
    picture: str, stem: str = "marigold_v2_depth_log_stage2", prompt: str = "marigold_v2_depth"
) -> dict[str, Any]:
    """A Marigold v2 run as Easel nodes (the templates' subgraph, written by hand): the image
    `picture` through the task's LoRA, VAE and saved prompt; "dec" is the post-processed
    prediction."""
    prediction = next(p for s, _, p in TASKS.values() if s == stem)
    return {
        "unet": {"type": "DiffusionModelLoader", "inputs": {"name": UNET}},
        "lora": {
            "type": "LoraLoaderModelOnly",
            "inputs": {"model": ["unet", "model"], "name": f"{stem}.safetensors"},
        },
        "sampling": {
            "type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["lora", "model"], "sampling": "img_to_img_velocity"},
        },
        "prompt": {
            "type": "ConditioningLoader",
            "inputs": {"conditioning_name": f"{prompt}_conditioning.safetensors"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": f"{stem}_vae.safetensors"}},
        "image": {"type": "LoadImage", "inputs": {"image": picture}},
        "latent": {
            "type": "VAEEncode",
            "inputs": {"image": ["image", "image"], "vae": ["vae", "vae"]},
        },
        "guider": {
            "type": "BasicGuider",
            "inputs": {"model": ["sampling", "model"], "conditioning": ["prompt", "conditioning"]},
        },
        "sampler": {"type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "sigmas": {"type": "ManualSigmas", "inputs": {"sigmas": "0.5, 0"}},
        "noise": {"type": "DisableNoise", "inputs": {}},
        "sample": {
            "type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", "noise"],
                "guider": ["guider", "guider"],
                "sampler": ["sampler", "sampler"],
                "sigmas": ["sigmas", "sigmas"],
                "latent_image": ["latent", "latent"],
            },
        },
        "decoded": {
            "type": "VAEDecode",
            "inputs": {"latent": ["sample", "output"], "vae": ["vae", "vae"]},
        },
        "dec": {
            "type": "MarigoldV2PostProcess",
            "inputs": {"image": ["decoded", "image"], "prediction": prediction},
        },
    }


@pytest.fixture(scope="module")
def marigold_models(tmp_path_factory: pytest.TempPathFactory) -> TinyMarigold:
    return build(tmp_path_factory.mktemp("marigold"))


def prediction_image(models: TinyMarigold, image: Any, stem: str, level: float = 0.5) -> Any:
    """The decoded prediction [1, 3, H, W] in [0, 1], computed apart from Easel."""
    from diffusers import QwenImagePipeline

    transformer = copy.deepcopy(models.transformer)
    with torch.no_grad():
        for name, (down, up) in models.loras[stem].items():
            transformer.get_submodule(name).weight += up @ down
        vae = models.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1)
        std = torch.tensor(vae.config.latents_std).view(1, 16, 1, 1)
        pixels = image * 2 - 1
        z = (vae.encode(pixels[:, :, None]).latent_dist.mode()[:, :, 0] - mean) / std
        h, w = z.shape[-2:]
        packed = QwenImagePipeline._pack_latents(z, 1, 16, h, w)
        v = transformer(
            hidden_states=packed,
            timestep=torch.tensor([level]),
            encoder_hidden_states=models.prompts[stem],
            img_shapes=[[(1, h // 2, w // 2)]],
            return_dict=False,
        )[0]
        target = packed - v  # IMG_TO_IMG_VELOCITY: denoised = x - v, one Euler step to 0
        raw = QwenImagePipeline._unpack_latents(target, h * 8, w * 8, 8)[:, :, 0]
        decoded = vae.decode((raw * std + mean)[:, :, None], return_dict=False)[0][:, :, 0]
    return (decoded / 2 + 0.5).clamp(0, 1)


def postprocess(image: np.ndarray, prediction: str) -> np.ndarray:
    """ComfyUI's MarigoldV2PostProcess, in numpy, on one [1, 3, H, W] image."""
    if prediction == "depth":
        d = image.mean(axis=1, keepdims=True)
        low, high = d.min(), d.max()
        return np.repeat((high - d) / max(high - low, 1e-6), 3, axis=1)
    if prediction == "normals":
        n = image * 2 - 1
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
        return (n + 1) / 2
    return np.where(
        image <= 0.0031308,
        image * 12.92,
        1.055 * np.maximum(image, 0.0031308) ** (1 / 2.4) - 0.055,
    )


def run_template(
    name: str, models: TinyMarigold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, dict[str, Any], Any]:
    """The template converted and run on a random input image with the float transformer:
    (the input image, the workflow, the run's result)."""
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    generator = torch.Generator().manual_seed(SEED)
    pixels = (torch.rand(SIZE, SIZE, 3, generator=generator) * 255).to(torch.uint8)
    PILImage.fromarray(pixels.numpy(), "RGB").save(tmp_path / "input.png")
    image = pixels.permute(2, 0, 1)[None].float() / 255  # [1, 3, H, W], as Easel's IMAGE
    roots = [models.root / "models"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    raw = template(name)
    [instance] = [n for n in raw["nodes"] if n["type"] == raw["definitions"]["subgraphs"][0]["id"]]
    assert instance["widgets_values"][3] == INT8_UNET  # the subgraph's unet_name input
    instance["widgets_values"][3] = UNET
    workflow = to_easel(raw)
    nodes = workflow["nodes"]
    [load] = [i for i, n in nodes.items() if n["type"] == "LoadImage"]
    set_input(workflow, f"{load}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    return image, workflow, result


def check_template(
    name: str, models: TinyMarigold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, workflow, result = run_template(name, models, tmp_path, monkeypatch)
    assert result.ok, result.failures
    nodes = workflow["nodes"]
    stem, _, prediction = TASKS[name]
    [post] = [i for i, n in nodes.items() if n["type"] == "MarigoldV2PostProcess"]
    assert nodes[post]["inputs"]["prediction"] == prediction
    [sampling] = [i for i, n in nodes.items() if n["type"] == "ModelSamplingAuraFlow"]
    assert nodes[sampling]["inputs"]["sampling"] == "img_to_img_velocity"
    ours = result.values[post]["image"].numpy()
    decoded = prediction_image(models, image, stem)
    theirs = postprocess(decoded.numpy().astype(np.float64), prediction)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert np.abs(ours - theirs).max() <= TOLERANCE
    [saved] = [f for entry in result.ui.values() for f in entry.get("files", [])]
    assert (tmp_path / "out" / saved).is_file()


def test_depth_template_equals_the_velocity_step_on_diffusers_modules(
    marigold_models: TinyMarigold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_template("image_marigold_v2_depth_estimation", marigold_models, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["image_marigold_v2_surface_normal_estimation", "image_marigold_v2_albedo_estimation"]
)
def test_normals_and_albedo_templates_equal_the_reference(
    name: str, marigold_models: TinyMarigold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_template(name, marigold_models, tmp_path, monkeypatch)


def test_the_templates_int8_transformer_is_refused_naming_it(
    marigold_models: TinyMarigold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The int8 ConvRot file the template names is refused, naming the file and a quantised
    tensor, rather than read as floats."""
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input

    roots = [marigold_models.root / "models"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    workflow = to_easel(template("image_marigold_v2_depth_estimation"))
    [loader] = [i for i, n in workflow["nodes"].items() if n["type"] == "DiffusionModelLoader"]
    [load] = [i for i, n in workflow["nodes"].items() if n["type"] == "LoadImage"]
    PILImage.new("RGB", (SIZE, SIZE)).save(tmp_path / "input.png")
    set_input(workflow, f"{load}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, targets=[loader])
    assert not result.ok
    [failure] = result.failures
    assert failure.node == loader
    assert INT8_UNET in failure.message and "transformer_blocks.0.attn.to_q" in failure.message
