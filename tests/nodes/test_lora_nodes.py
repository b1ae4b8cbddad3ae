"""LoraLoader and LoraLoaderModelOnly through the executor on the tiny models: handles gain
patches and the checkpoint's do not, LoRAs stack, errors and warnings name the node and input,
and a strength change re-runs only what it must."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures.tiny_models import TinyModels
from tests.models.test_lora import (
    kohya_state_dict,
    lora_targets,
    peft_state_dict,
    random_lora,
    save,
)
from tests.nodes.workflows import txt2img


@pytest.fixture
def lora_models(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A second models root holding loras/ beside the tiny models, a manager over both, and
    LoRA files made for the tiny checkpoint's UNet and text encoder."""
    from easel.models.manager import ModelManager

    root = tmp_path / "models"
    (root / "loras").mkdir(parents=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join([str(tiny_models.root), str(root)]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manager = ModelManager([tiny_models.root, root], device="cpu", dtype=torch.float32)
    model, clip, _ = manager.load_checkpoint(tiny_models.name)
    unet_layers = random_lora(lora_targets(model.unet), seed=3)
    te_layers = random_lora(lora_targets(clip.parts[0].model), seed=4)
    save(kohya_state_dict(unet_layers, te_layers), root / "loras" / "style.safetensors")
    save(
        peft_state_dict(random_lora(lora_targets(model.unet, convs=False), seed=5), {}),
        root / "loras" / "sub" / "unet-only.safetensors",
    )
    return {"root": root, "manager": manager, "unet": unet_layers, "te": te_layers}


@pytest.fixture
def run(lora_models: dict[str, Any]) -> Any:
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    executor = Executor(
        load_plugins(entry_points=False), services={"models": lora_models["manager"]}
    )

    def run_nodes(nodes: dict[str, Any], targets: list[str], **kwargs: Any) -> Any:
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        return executor.run(workflow, targets=targets, keep_values=True, **kwargs)

    return run_nodes


def with_lora(
    nodes: dict[str, Any],
    name: str = "style.safetensors",
    strength_model: float = 0.7,
    strength_clip: float = 0.7,
    node_id: str = "lora",
    source: str = "ckpt",
) -> dict[str, Any]:
    """Insert a LoraLoader between `source` and the sampler and text encoders."""
    nodes[node_id] = {
        "type": "LoraLoader",
        "inputs": {
            "model": [source, "model"],
            "clip": [source, "clip"],
            "name": name,
            "strength_model": strength_model,
            "strength_clip": strength_clip,
        },
    }
    nodes["pos"]["inputs"]["clip"] = [node_id, "clip"]
    nodes["neg"]["inputs"]["clip"] = [node_id, "clip"]
    nodes["k"]["inputs"]["model"] = [node_id, "model"]
    return nodes


def test_names_are_paths_under_loras_with_extension(lora_models: dict[str, Any]) -> None:
    from easel.nodes.lora import LoraLoader, LoraLoaderModelOnly

    for node_type in (LoraLoader, LoraLoaderModelOnly):
        assert node_type.inputs["name"].current_choices() == [
            "style.safetensors",
            "sub/unet-only.safetensors",
        ]


def test_loader_adds_patches_and_leaves_the_checkpoint(run: Any) -> None:
    result = run(with_lora(txt2img()), ["lora", "ckpt"])
    assert result.status == "succeeded", result.failures
    base, out = result.values["ckpt"], result.values["lora"]
    assert base["model"].patches == () and base["clip"].patches == ()
    ((weights, strength),) = out["model"].patches
    assert strength == 0.7 and weights.name == "style.safetensors"
    assert out["clip"].patches == ((weights, 0.7),)
    assert out["model"].unet is base["model"].unet  # the shared module, not a copy
    assert out["clip"].parts[0].model is base["clip"].parts[0].model


def test_lora_changes_the_image_and_never_the_shared_model(run: Any, lora_models: Any) -> None:
    manager = lora_models["manager"]
    unet = manager.load_checkpoint("tiny-shapes")[0].unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = run(txt2img(), ["dec"])
    lora = run(with_lora(txt2img()), ["dec"])
    model_only = run(with_lora(txt2img(), strength_clip=0.0), ["dec"])
    again = run(txt2img(seed=43), ["dec"])  # a different seed: the plain chain re-runs
    plain_again = run(txt2img(), ["dec"])
    for result in (plain, lora, model_only, again, plain_again):
        assert result.status == "succeeded", result.failures
    image = {
        name: r.values["dec"]["image"]
        for name, r in (("plain", plain), ("lora", lora), ("model_only", model_only))
    }
    assert (image["lora"] - image["plain"]).abs().max() > 0.01
    assert (image["lora"] - image["model_only"]).abs().max() > 1e-4  # the text LoRA counts
    assert torch.equal(plain_again.values["dec"]["image"], image["plain"])
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_zero_strength_returns_the_inputs(run: Any) -> None:
    result = run(with_lora(txt2img(), strength_model=0.0, strength_clip=0.0), ["lora", "ckpt"])
    assert result.status == "succeeded", result.failures
    assert result.values["lora"]["model"] is result.values["ckpt"]["model"]
    assert result.values["lora"]["clip"] is result.values["ckpt"]["clip"]
    result = run(with_lora(txt2img(), strength_model=0.0, strength_clip=0.5), ["lora", "ckpt"])
    assert result.values["lora"]["model"] is result.values["ckpt"]["model"]
    assert len(result.values["lora"]["clip"].patches) == 1


def test_loaders_stack_and_model_only(run: Any) -> None:
    nodes = with_lora(txt2img(), strength_model=0.5)
    with_lora(
        nodes,
        "sub/unet-only.safetensors",
        strength_model=-0.25,
        strength_clip=0.0,
        node_id="lora2",
        source="lora",
    )
    nodes["only"] = {
        "type": "LoraLoaderModelOnly",
        "inputs": {"model": ["lora2", "model"], "name": "style.safetensors", "strength_model": 0.1},
    }
    nodes["k"]["inputs"]["model"] = ["only", "model"]
    result = run(nodes, ["dec", "only"])
    assert result.status == "succeeded", result.failures
    patches = result.values["only"]["model"].patches
    assert [(w.name, s) for w, s in patches] == [
        ("style.safetensors", 0.5),
        ("sub/unet-only.safetensors", -0.25),
        ("style.safetensors", 0.1),
    ]
    assert [(w.name, s) for w, s in result.values["lora2"]["clip"].patches] == [
        ("style.safetensors", 0.7)
    ]


def test_bad_names_and_files_name_the_node_and_input(run: Any, lora_models: Any) -> None:
    from easel.core.graph import WorkflowError

    with pytest.raises(
        WorkflowError,
        match=re.escape(
            "node 'lora' (LoraLoader), input 'name': 'nope.safetensors' is not one of: "
            "'style.safetensors'"
        ),
    ):
        run(with_lora(txt2img(), "nope.safetensors"), ["lora"])

    loras = lora_models["root"] / "loras"
    save({"model.diffusion_model.x.weight": torch.zeros(2)}, loras / "checkpoint.safetensors")
    result = run(with_lora(txt2img(), "checkpoint.safetensors"), ["lora"])
    failure = result.failures[0]
    assert (failure.node, failure.input) == ("lora", "name")
    assert "checkpoint.safetensors has no LoRA layer Easel can read" in failure.message

    # an SDXL LoRA (other layer names and a second text encoder) on an SD1-style model
    sdxl = {
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_down.weight": torch.zeros(
            2, 640
        ),
        "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_up.weight": torch.zeros(
            640, 2
        ),
        "lora_te2_text_model_encoder_layers_30_mlp_fc1.lora_down.weight": torch.zeros(2, 4),
        "lora_te2_text_model_encoder_layers_30_mlp_fc1.lora_up.weight": torch.zeros(4, 2),
    }
    save(sdxl, loras / "xl.safetensors")
    result = run(with_lora(txt2img(), "xl.safetensors"), ["lora"])
    failure = result.failures[0]
    assert (failure.node, failure.input) == ("lora", "name")
    assert "LoRA 'xl.safetensors' changes no layer of the linked clip and model" in failure.message
    assert "another model family" in failure.message


def test_skipped_keys_and_layers_are_warned(run: Any, lora_models: Any) -> None:
    state = kohya_state_dict(lora_models["unet"], lora_models["te"])
    state["lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a"] = torch.zeros(2, 2)
    state["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"] = torch.zeros(2, 8)
    state["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight"] = torch.zeros(16, 2)
    save(state, lora_models["root"] / "loras" / "odd.safetensors")
    events: list[Any] = []
    result = run(with_lora(txt2img(), "odd.safetensors"), ["lora"], on_event=events.append)
    assert result.status == "succeeded", result.failures
    warnings = [e.data["message"] for e in events if e.type == "node_warning"]
    assert any(
        "1 keys are not LoRA layers Easel reads" in w and "hada_w1_a" in w for w in warnings
    ), warnings
    assert any(
        "has layers for text_encoder_2, which the linked models do not have" in w for w in warnings
    ), warnings


def test_replacing_the_file_reloads_it(run: Any, lora_models: Any) -> None:
    path = lora_models["root"] / "loras" / "style.safetensors"
    first = run(with_lora(txt2img()), ["lora"]).values["lora"]["model"].patches[0][0]
    assert run(with_lora(txt2img()), ["lora"]).node_status["lora"] == "cached"
    save(peft_state_dict(lora_models["unet"], {}), path)
    os.utime(path, ns=(10**9, 10**9))
    second = run(with_lora(txt2img()), ["lora"])
    assert second.node_status["lora"] == "executed"
    assert second.values["lora"]["model"].patches[0][0] is not first


def test_a_strength_change_reruns_only_what_it_must(run: Any) -> None:
    first = run(with_lora(txt2img()), ["dec"])
    assert first.status == "succeeded", first.failures
    model_side = run(with_lora(txt2img(), strength_model=0.3), ["dec"])
    assert model_side.status == "succeeded", model_side.failures
    status = model_side.node_status
    assert (status["lora"], status["k"], status["dec"]) == ("executed",) * 3
    assert (status["pos"], status["neg"]) == ("cached", "cached")  # the clip side is unchanged
    assert not torch.equal(model_side.values["dec"]["image"], first.values["dec"]["image"])

    clip_side = run(with_lora(txt2img(), strength_model=0.3, strength_clip=0.2), ["pos", "k"])
    status = clip_side.node_status
    assert (status["lora"], status["pos"], status["neg"]) == ("executed",) * 3
    assert status["k"] == "executed"  # its conditioning changed
    back = run(with_lora(txt2img(), strength_model=0.3), ["dec"])
    assert all(back.node_status[n] == "cached" for n in ("pos", "neg", "k", "dec"))


def test_branches_with_different_strengths_run_in_parallel(lora_models: Any) -> None:
    """One workflow, two LoRA strengths and the plain model on one shared UNet, sampled on
    three threads at once: each image is what it is when run alone."""
    import threading

    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins

    def branch(nodes: dict[str, Any], suffix: str, strength: float | None) -> None:
        base = txt2img()
        for node_id in ("pos", "neg", "lat", "k", "dec"):
            node = base[node_id]
            for name, value in node["inputs"].items():
                if isinstance(value, list) and value[0] != "ckpt":
                    node["inputs"][name] = [value[0] + suffix, value[1]]
            nodes[node_id + suffix] = node
        if strength is not None:
            nodes["lora" + suffix] = {
                "type": "LoraLoader",
                "inputs": {
                    "model": ["ckpt", "model"],
                    "clip": ["ckpt", "clip"],
                    "name": "style.safetensors",
                    "strength_model": strength,
                    "strength_clip": strength,
                },
            }
            for node_id, key in (("pos", "clip"), ("neg", "clip"), ("k", "model")):
                nodes[node_id + suffix]["inputs"][key] = ["lora" + suffix, key]

    nodes: dict[str, Any] = {"ckpt": txt2img()["ckpt"]}
    for suffix, strength in (("_a", 0.5), ("_b", 1.0), ("_c", None)):
        branch(nodes, suffix, strength)
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    targets = ["dec_a", "dec_b", "dec_c"]
    services = {"models": lora_models["manager"]}
    registry = load_plugins(entry_points=False)
    alone = Executor(registry, services=services).run(workflow, targets=targets, keep_values=True)
    unet = lora_models["manager"].load_checkpoint("tiny-shapes")[0].unet
    lock = threading.Lock()
    calls = {"active": 0, "most": 0}
    threads: set[str] = set()

    def enter(module: Any, args: Any) -> None:
        with lock:
            threads.add(threading.current_thread().name)
            calls["active"] += 1
            calls["most"] = max(calls["most"], calls["active"])

    def leave(module: Any, args: Any, output: Any) -> None:
        with lock:
            calls["active"] -= 1

    hooks = [unet.register_forward_pre_hook(enter), unet.register_forward_hook(leave)]
    try:
        parallel = Executor(registry, services=services, max_workers=3).run(
            workflow, targets=targets, keep_values=True
        )
    finally:
        for hook in hooks:
            hook.remove()
    assert alone.status == parallel.status == "succeeded", parallel.failures
    # the shared UNet did run on several threads at the same time
    assert len(threads) > 1 and calls["most"] > 1, (threads, calls)
    images = {t: alone.values[t]["image"] for t in targets}
    assert (images["dec_a"] - images["dec_b"]).abs().max() > 0.01
    assert (images["dec_a"] - images["dec_c"]).abs().max() > 0.01
    for target in targets:
        assert torch.equal(parallel.values[target]["image"], images[target]), target


def test_a_comfyui_prompt_with_lora_loaders_runs(run: Any) -> None:
    """ComfyUI's API format (lora_name, both loaders) converts and gives the image of the
    same Easel workflow."""
    from easel.comfy.convert import to_easel

    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-shapes"}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": "style.safetensors",
                "strength_model": 0.7,
                "strength_clip": 0.7,
            },
        },
        "11": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {
                "model": ["10", 0],
                "lora_name": "sub/unet-only.safetensors",
                "strength_model": -0.5,
            },
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a red circle", "clip": ["10", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blue", "clip": ["10", 1]}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["11", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
                "seed": 42,
                "steps": 2,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    }
    workflow = to_easel(prompt)
    types = {node["type"] for node in workflow["nodes"].values()}
    assert {"LoraLoader", "LoraLoaderModelOnly"} <= types
    decode = next(i for i, n in workflow["nodes"].items() if n["type"] == "VAEDecode")
    ours = run(workflow["nodes"], [decode])
    assert ours.status == "succeeded", ours.failures

    nodes = with_lora(txt2img())
    nodes["only"] = {
        "type": "LoraLoaderModelOnly",
        "inputs": {
            "model": ["lora", "model"],
            "name": "sub/unet-only.safetensors",
            "strength_model": -0.5,
        },
    }
    nodes["k"]["inputs"]["model"] = ["only", "model"]
    native = run(nodes, ["dec"])
    assert torch.equal(ours.values[decode]["image"], native.values["dec"]["image"])
