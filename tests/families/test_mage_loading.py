"""Mage-Flow's files: which loader takes a diffusion-model file (Mage-Flow's keys are
Qwen-Image's), the Mage-VAE file read into Easel's module exactly (its training-only anchor VAE
left out), and TextEncodeMageFlowEdit's result size."""

from __future__ import annotations

import itertools
from typing import Any

import torch

from easel.models.family_files import DIFFUSION_MODELS, Shape, header
from tests.fixtures import mage_family
from tests.fixtures.mage_family import FILES

mage_models = mage_family.mage_models


def first_loader(state: dict[str, Any]) -> str:
    import importlib

    for name in DIFFUSION_MODELS:
        if importlib.import_module(name).recognise_diffusion_model(state):
            return name
    return "none"


def test_a_mage_flow_file_goes_to_its_loader_and_a_qwen_image_file_does_not(
    mage_models: Any,
) -> None:
    path = mage_models.root / "models" / "diffusion_models" / FILES["transformer"]
    state = header(path)
    assert state is not None
    assert first_loader(state) == "easel.models.mage_loading"
    # the same keys on Qwen-Image's 64 input channels (16 channels in 2x2 patches)
    qwen = dict(state)
    key = "model.diffusion_model.img_in.weight"
    qwen[key] = Shape((state[key].shape[0], 64))
    assert first_loader(qwen) == "easel.models.qwen_loading"


def test_the_mage_vae_file_loads_exactly_without_its_anchor_vae(mage_models: Any) -> None:
    from safetensors.torch import load_file

    from easel.models.mage_vae import MageVae
    from easel.models.vae_files import load_vae_file

    path = mage_models.root / "models" / "vae" / FILES["vae"]
    state = load_file(str(path))
    assert any(k.startswith("pipeline.y_embedder.encoder.") for k in state)
    vae = load_vae_file(path, state, torch.float32)
    assert isinstance(vae, MageVae)
    ours, theirs = vae.state_dict(), mage_models.vae.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (vae.config.latent_channels, 2 ** (len(vae.config.block_out_channels) - 1)) == (128, 16)


def test_result_size_takes_the_first_image_per_axis_and_floors_to_16() -> None:
    from easel.nodes.mage_flow import result_size

    image = torch.zeros(1, 3, 100, 75)
    assert result_size(0, 0, image) == (64, 96)
    assert result_size(200, 0, image) == (192, 96)
    assert result_size(0, 0, None) == (1024, 1024)
    assert result_size(8, 8, None) == (16, 16)


def test_text_encode_mage_flow_edit_refuses_another_familys_clip_naming_it(
    mage_models: Any, monkeypatch: Any
) -> None:
    """The same Qwen3-VL file loaded as Flux 3's text encoder (type flux3) is not a Mage-Flow
    CLIP: the node says so, naming `clip`, before encoding anything."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    roots = [mage_models.root / "models", mage_models.root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = mage_family.workflow()
    nodes["clip"]["inputs"]["type"] = "flux3"
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    result = executor.run(workflow, targets=["text"], keep_values=True)
    [failure] = result.failures
    assert failure.node == "text" and failure.input == "clip", failure
    assert "type mage" in failure.message and "Flux 3" in failure.message


def test_a_lora_in_comfyuis_layout_patches_the_transformer_through_the_node(
    mage_models: Any, monkeypatch: Any
) -> None:
    """A LoRA on every block Linear (`diffusion_model.<layer>.lora_A/B`, read by Qwen-Image's
    converters: the same layer names) through LoraLoaderModelOnly: the sampled latent equals
    the same sampling with W + B A in place of every patched weight."""
    import copy
    import os

    from safetensors.torch import save_file

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    model = mage_models.transformer
    generator = torch.Generator().manual_seed(4)
    lora, patched = {}, copy.deepcopy(model)
    for name, sub in patched.named_modules():
        if isinstance(sub, torch.nn.Linear) and name.startswith("transformer_blocks."):
            down = torch.randn(2, sub.in_features, generator=generator) * 0.2
            up = torch.randn(sub.out_features, 2, generator=generator) * 0.2
            lora[f"diffusion_model.{name}.lora_A.weight"] = down
            lora[f"diffusion_model.{name}.lora_B.weight"] = up
            with torch.no_grad():
                sub.weight += up @ down
    root = mage_models.root
    (root / "models" / "loras").mkdir(exist_ok=True)
    save_file(lora, str(root / "models" / "loras" / "mage_lora.safetensors"))
    roots = [root / "models", root / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    nodes = mage_family.workflow(steps=2, cfg=1.0)
    nodes["lora"] = {
        "type": "LoraLoaderModelOnly",
        "inputs": {"model": ["unet", "model"], "name": "mage_lora.safetensors"},
    }
    nodes["k"]["inputs"]["model"] = ["lora", "model"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    result = executor.run(workflow, targets=["k"], keep_values=True)
    assert result.ok, result.failures
    ours = result.values["k"]["latent"]["samples"]

    embeds = result.values["text"]["positive"]["embeds"]
    generator = torch.Generator("cpu").manual_seed(nodes["k"]["inputs"]["seed"])
    x = torch.randn(ours.shape, generator=generator)
    levels = [1.0, 6 * 0.5 / (1 + 5 * 0.5), 0.0]  # 2 steps, shift 6
    with torch.no_grad():
        for now, after in itertools.pairwise(levels):
            x = x + (after - now) * patched(x, embeds, torch.tensor([now]))
    assert (ours - x).abs().max().item() <= 1e-5 * x.abs().max().item()  # float rounding
    with torch.no_grad():  # and the LoRA changed the result
        plain = model(ours, embeds, torch.tensor([0.5]))
        assert (patched(ours, embeds, torch.tensor([0.5])) - plain).abs().max().item() > 1e-2
