"""A LoRA through an Easel workflow (CheckpointLoader -> LoraLoader -> TextEncode/KSampler ->
VAEDecode) gives diffusers' image with `load_lora_weights` at the same scale: kohya and PEFT
files covering the UNet (LoCon convs included) and the text encoder, and an SDXL kohya file in
the LDM block layout with both text encoders. CPU fp32, tiny random weights, max abs pixel
difference <= 1e-3. diffusers' LoRA loading needs peft (the `dev` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import peft  # noqa: F401 - diffusers' load_lora_weights needs it: fail here, not deep inside
import pytest
import torch

from tests.fixtures.tiny_models import TinyModels, _ldm_unet_key
from tests.models.test_lora import (
    kohya_state_dict,
    lora_targets,
    peft_state_dict,
    random_lora,
    save,
)
from tests.nodes.test_lora_nodes import lora_models, run, with_lora
from tests.nodes.workflows import SIZE, txt2img

__all__ = ["lora_models", "run"]
TOLERANCE = 1e-3


def reference(pipe: Any, size: int = SIZE, **kwargs: Any) -> torch.Tensor:
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        "a red circle",
        negative_prompt="blue",
        height=size,
        width=size,
        num_inference_steps=3,
        guidance_scale=5.0,
        generator=torch.Generator("cpu").manual_seed(42),
        output_type="np",
        **kwargs,
    ).images
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def image(result: Any) -> torch.Tensor:
    assert result.status == "succeeded", result.failures
    return result.values["dec"]["image"]


@pytest.mark.parametrize("fmt", ["kohya", "peft"])
def test_lora_matches_diffusers_load_lora_weights(
    fmt: str, run: Any, lora_models: Any, tiny_models: TinyModels
) -> None:
    from diffusers import StableDiffusionPipeline

    unet_layers, te_layers = lora_models["unet"], lora_models["te"]
    loras = lora_models["root"] / "loras"
    if fmt == "kohya":  # alpha 1 of rank 2: scale 0.5; resnet convs as LoCon 3x3
        save(kohya_state_dict(unet_layers, te_layers, alpha=1.0), loras / "parity.safetensors")
    else:
        save(peft_state_dict(unet_layers, te_layers), loras / "parity.safetensors")
    strengths = {"kohya": (0.7, 0.7), "peft": (0.6, -0.9)}[fmt]
    ours = image(run(with_lora(txt2img(steps=3), "parity.safetensors", *strengths), ["dec"]))
    plain = image(run(txt2img(steps=3), ["dec"]))

    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_models.bundle), local_files_only=True, safety_checker=None
    )
    pipe.load_lora_weights(str(loras), weight_name="parity.safetensors", adapter_name="x")
    if fmt == "kohya":
        pipe.fuse_lora(lora_scale=0.7)  # merged weights, as Easel computes them
    else:  # unmerged PEFT layers, model and text encoder at different scales
        pipe.set_adapters("x", adapter_weights={"unet": 0.6, "text_encoder": -0.9})
    theirs = reference(pipe)
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - plain).abs().max().item() > 0.02  # the LoRA changes the image
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def _sdxl_ldm_name(name: str, layers_per_block: int) -> str:
    """The original (SGM) UNet path of a diffusers SDXL module, as kohya names SDXL layers."""
    if name.startswith("add_embedding."):
        return name.replace("add_embedding.linear_1", "label_emb.0.0").replace(
            "add_embedding.linear_2", "label_emb.0.2"
        )
    return _ldm_unet_key(name + ".weight", layers_per_block)[: -len(".weight")]


def test_sdxl_lora_matches_diffusers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An SDXL kohya LoRA in the LDM block layout (lora_unet_input_blocks_..., lora_te1_,
    lora_te2_) against StableDiffusionXLPipeline.load_lora_weights (which maps the blocks with
    the UNet config, as Easel does)."""
    import os

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from tests.fixtures.sd_family import build, write_comfy_tokenizer

    write_comfy_tokenizer(tmp_path / "ComfyUI")
    built = build("sdxl", tmp_path)
    roots = [tmp_path / "models", tmp_path / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(map(str, roots)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = built.pipe
    unet = pipe.unet
    layers = unet.config.layers_per_block
    unet_layers = random_lora(lora_targets(unet), seed=11, size=0.2)
    te1 = random_lora(lora_targets(pipe.text_encoder), seed=12)
    te2 = random_lora(lora_targets(pipe.text_encoder_2), seed=13)
    assert any(n.startswith("add_embedding.") for n in unet_layers)
    sgm = {_sdxl_ldm_name(n, layers): v for n, v in unet_layers.items()}
    state = kohya_state_dict(sgm, te1, te2, alpha=1.0, te_prefix="lora_te1_")
    assert "lora_unet_input_blocks_4_1_transformer_blocks_1_attn2_to_k.lora_down.weight" in state
    assert "lora_unet_label_emb_0_0.lora_down.weight" in state
    save(state, tmp_path / "models" / "loras" / "xl" / "style.safetensors")

    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    size = 64
    nodes = txt2img(steps=3)
    nodes["ckpt"]["inputs"]["name"] = "sdxl.safetensors"
    nodes["lat"]["inputs"].update(width=size, height=size)
    with_lora(nodes, "xl/style.safetensors", 0.8, 0.8)
    events: list[Any] = []
    result = executor.run(
        {"format": "easel.workflow", "version": 1, "nodes": nodes},
        targets=["dec"],
        keep_values=True,
        on_event=events.append,
    )
    assert not [e for e in events if e.type == "node_warning"]  # every layer applied
    ours = image(result)
    del nodes["lora"]
    for node_id, key in (("pos", "clip"), ("neg", "clip"), ("k", "model")):
        nodes[node_id]["inputs"][key] = ["ckpt", key]
    plain = image(
        executor.run(
            {"format": "easel.workflow", "version": 1, "nodes": nodes},
            targets=["dec"],
            keep_values=True,
        )
    )
    assert (ours - plain).abs().max().item() > 0.02  # the LoRA changes the image
    clip = result.values["lora"]["clip"]
    assert sorted(part.key for part in clip.parts) == ["g", "l"]

    pipe.load_lora_weights(
        str(tmp_path / "models" / "loras" / "xl"), weight_name="style.safetensors"
    )
    pipe.fuse_lora(lora_scale=0.8)
    try:
        theirs = reference(pipe, size=size)
    finally:
        pipe.unfuse_lora()
        pipe.unload_lora_weights()
    assert ours.shape == theirs.shape == (1, 3, size, size)
    assert (ours - theirs).abs().max().item() <= TOLERANCE
