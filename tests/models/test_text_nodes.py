"""The text nodes: TextEncode, CLIPSetLastLayer, TextEncodeSDXL and TextEncodeSDXLRefiner, called
as the executor calls them and run in a workflow on the tiny checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.models.handles import ClipHandle
from easel.models.text import encode_text
from easel.nodes.conditioning import (
    CLIPSetLastLayer,
    TextEncode,
    TextEncodeSDXL,
    TextEncodeSDXLRefiner,
)
from tests.fixtures.tiny_models import TinyModels
from tests.models.test_text_encoding import (
    L_WIDTH,
    sd1_clip,
    sd1_reference,
    sdxl_clip,
    sdxl_reference,
)


def context(manager: Any = None) -> tuple[Context, list[str]]:
    warnings: list[str] = []
    ctx = Context(
        node_id="n", node_type="T", services={"models": manager}, on_warning=warnings.append
    )
    return ctx, warnings


def test_text_encode_warns_for_unknown_embeddings_and_long_prompts(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)
    ctx, warnings = context(clip.manager)
    cond = TextEncode.call(ctx, {"clip": clip, "text": "a embedding:gone " + "cat " * 80})
    cond = cond["conditioning"]
    assert cond["embeds"].shape == (1, 154, L_WIDTH)
    assert [w.split(" ")[:2] for w in warnings] == [["embedding", "'gone'"], ["the", "prompt"]]
    assert str(tmp_path / "embeddings") in warnings[0]
    assert torch.equal(cond["uncond"]["embeds"], sd1_reference(pipe, ""))


def test_text_encode_reports_a_refused_pickle_embedding_on_its_text_input(tmp_path: Path) -> None:
    (tmp_path / "embeddings").mkdir()
    torch.save(
        {"string_to_param": {"*": torch.zeros(1, L_WIDTH)}}, str(tmp_path / "embeddings" / "old.pt")
    )
    clip, _ = sd1_clip(tmp_path)
    ctx, _ = context(clip.manager)
    with pytest.raises(NodeError) as raised:
        TextEncode.call(ctx, {"clip": clip, "text": "embedding:old"})
    assert raised.value.input == "text" and "pickle" in raised.value.message


def test_text_encode_without_clip_names_the_input() -> None:
    ctx, _ = context()
    with pytest.raises(NodeError) as raised:
        TextEncode.call(ctx, {"clip": None, "text": "a"})
    assert raised.value.input == "clip"


def test_clip_set_last_layer_is_diffusers_clip_skip(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)
    ctx, _ = context(clip.manager)
    skipped = CLIPSetLastLayer.call(ctx, {"clip": clip, "stop_at_clip_layer": -2})["clip"]
    assert [part.layer for part in skipped.parts] == [-2] and clip.parts[0].layer == -1
    cond = TextEncode.call(ctx, {"clip": skipped, "text": "a red circle"})["conditioning"]
    assert torch.equal(cond["embeds"], sd1_reference(pipe, "a red circle", clip_skip=1))
    assert torch.equal(cond["uncond"]["embeds"], sd1_reference(pipe, "", clip_skip=1))
    assert CLIPSetLastLayer.inputs["stop_at_clip_layer"].info.ge == -24


def test_text_encode_sdxl_sends_each_text_to_its_encoder_with_sizes(tmp_path: Path) -> None:
    clip, pipe = sdxl_clip(tmp_path)
    ctx, _ = context(clip.manager)
    inputs = {
        "clip": clip,
        "width": 2048,
        "height": 1024,
        "crop_w": 8,
        "crop_h": 16,
        "target_width": 1024,
        "target_height": 512,
        "text_g": "a red circle",
        "text_l": "a blue square",
    }
    cond = TextEncodeSDXL.call(ctx, inputs)["conditioning"]
    sizes = {
        k: inputs[k]
        for k in ("width", "height", "crop_w", "crop_h", "target_width", "target_height")
    }
    assert cond["sdxl"] == sizes and cond["uncond"]["sdxl"] == sizes
    only_l = ClipHandle("l", (clip.parts[0],), clip.manager)
    only_g = ClipHandle("g", (clip.parts[1],), clip.manager)
    assert torch.equal(
        cond["embeds"][..., :L_WIDTH], encode_text(only_l, "a blue square").conditioning["embeds"]
    )
    assert torch.equal(
        cond["embeds"][..., L_WIDTH:], encode_text(only_g, "a red circle").conditioning["embeds"]
    )
    assert torch.equal(cond["pooled"], sdxl_reference(pipe, "a red circle")[1])
    same = TextEncodeSDXL.call(ctx, {**inputs, "text_l": "a red circle"})["conditioning"]
    assert torch.equal(same["embeds"], sdxl_reference(pipe, "a red circle")[0])


def test_text_encode_sdxl_refuses_a_clip_without_both_encoders(tmp_path: Path) -> None:
    clip, _ = sd1_clip(tmp_path)
    ctx, _ = context(clip.manager)
    with pytest.raises(NodeError, match="needs an SDXL text encoder") as raised:
        TextEncodeSDXL.call(ctx, {"clip": clip, "text_g": "a", "text_l": "a"})
    assert raised.value.input == "clip"


def test_text_encode_sdxl_refiner_carries_the_aesthetic_score(tmp_path: Path) -> None:
    clip, pipe = sdxl_clip(tmp_path, refiner=True)
    ctx, _ = context(clip.manager)
    cond = TextEncodeSDXLRefiner.call(
        ctx, {"clip": clip, "ascore": 7.5, "width": 768, "height": 512, "text": "a red circle"}
    )
    cond = cond["conditioning"]
    assert cond["sdxl"] == {"aesthetic_score": 7.5, "width": 768, "height": 512}
    assert cond["uncond"]["sdxl"] == {"aesthetic_score": 2.5, "width": 768, "height": 512}
    embeds, pooled = sdxl_reference(pipe, "a red circle")
    assert torch.equal(cond["embeds"], embeds) and torch.equal(cond["pooled"], pooled)


def test_nodes_are_registered_and_comfyui_files_map_to_them() -> None:
    from easel.comfy.api_format import convert_prompt
    from easel.core.plugins import load_plugins

    registry = load_plugins(entry_points=False)
    for name in ("TextEncode", "CLIPSetLastLayer", "TextEncodeSDXL", "TextEncodeSDXLRefiner"):
        node_type = registry.get(name)
        assert node_type is not None and node_type.fn.__module__ == "easel.nodes.conditioning"
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "5": {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2},
        },
        "6": {
            "class_type": "CLIPTextEncodeSDXL",
            "inputs": {
                "clip": ["5", 0],
                "width": 1024,
                "height": 1024,
                "crop_w": 0,
                "crop_h": 0,
                "target_width": 1024,
                "target_height": 1024,
                "text_g": "g",
                "text_l": "l",
            },
        },
        "7": {
            "class_type": "CLIPTextEncodeSDXLRefiner",
            "inputs": {"clip": ["5", 0], "ascore": 6.0, "width": 1024, "height": 1024, "text": "t"},
        },
    }
    nodes = convert_prompt(prompt)["nodes"]
    for node in nodes.values():
        node_type = registry.get(node["type"])
        assert node_type is not None
        assert set(node["inputs"]) <= set(node_type.inputs), node
    assert nodes["5"]["inputs"]["stop_at_clip_layer"] == -2


def test_clip_skip_in_a_workflow_on_the_tiny_checkpoint(
    run_workflow: Any, tiny_models: TinyModels
) -> None:
    from diffusers import StableDiffusionPipeline

    nodes = {
        "ckpt": {"type": "CheckpointLoader", "inputs": {"name": tiny_models.name}},
        "skip": {
            "type": "CLIPSetLastLayer",
            "inputs": {"clip": ["ckpt", "clip"], "stop_at_clip_layer": -2},
        },
        "enc": {
            "type": "TextEncode",
            "inputs": {"clip": ["skip", "clip"], "text": "a (red:1.0) circle"},
        },
    }
    result = run_workflow(nodes, ["enc"])
    assert result.status == "succeeded", result.failures
    ours = result.values["enc"]["conditioning"]["embeds"]
    pipe = StableDiffusionPipeline.from_pretrained(
        str(tiny_models.bundle), local_files_only=True, safety_checker=None
    )
    assert torch.equal(ours, sd1_reference(pipe, "a red circle", clip_skip=1))
