"""ControlNet nodes give the images of diffusers' StableDiffusionControlNetPipeline (one
ControlNet, a percent range, two chained), loaded from a diffusers folder and from original-layout
single files with nothing beside them, on a tiny SD 1.x model with the real head rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.fixtures.tiny_models import MAX_TOKENS, vocab_size, write_tokenizer
from tests.models.test_controlnet_loading import randomise, write_single_file

SIZE = 16  # pixels; latents are 8x8 (VAE factor 2), so the ControlNets' hint encoders are 2x
HIDDEN = 16
STEPS = 3
SEED = 42


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Tiny models on a shared 2-core machine: torch's thread pool costs 50x more than it
    gains (a 8x8 convolution takes 40 ms with 2 busy threads, under 1 ms with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Built:
    root: Path
    checkpoint: Path
    nets: dict[str, Any]  # "a", "b": the ControlNetModels written
    hints: dict[str, Path]  # "a", "b": 16x16 RGB PNG files


def build_sd1_pipeline(folder: Path) -> Any:
    """A tiny StableDiffusionPipeline with SD 1.x's rules (8 heads, GroupNorm of 32)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tokenizer(folder / "tokenizer")
    torch.manual_seed(20)
    unet = UNet2DConditionModel(
        sample_size=8,
        layers_per_block=1,
        block_out_channels=(32, 64),
        attention_head_dim=8,
        cross_attention_dim=HIDDEN,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    torch.manual_seed(21)
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        layers_per_block=1,
        norm_num_groups=2,
        sample_size=SIZE,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
    )
    torch.manual_seed(22)
    text = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            hidden_size=HIDDEN,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=vocab_size(folder / "tokenizer"),
            max_position_embeddings=MAX_TOKENS,
        )
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="leading",
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        scheduler=scheduler,
        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "tokenizer")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return pipe


def write_hint(path: Path, seed: int) -> Path:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    from diffusers import ControlNetModel

    root = tmp_path_factory.mktemp("controlnet-models")
    checkpoint = root / "checkpoints" / "cn-sd1"
    pipe = build_sd1_pipeline(checkpoint)
    nets = {}
    for key, seed in (("a", 11), ("b", 12)):
        nets[key] = randomise(
            ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32)), seed
        )
    nets["a"].save_pretrained(str(root / "controlnet" / "cn-a"), safe_serialization=True)
    write_single_file(nets["a"], root / "controlnet" / "cn-a.safetensors", "prefixed")
    write_single_file(nets["b"], root / "controlnet" / "sub" / "cn-b.safetensors", "bare")
    hints = {"a": write_hint(root / "hint-a.png", 1), "b": write_hint(root / "hint-b.png", 2)}
    return Built(root, checkpoint, nets, hints)


@pytest.fixture
def run(built: Built, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a workflow's nodes on the built models (names offered from EASEL_MODELS_DIR)."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    monkeypatch.setenv("EASEL_MODELS_DIR", str(built.root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry = load_plugins(entry_points=False)
    manager = ModelManager([built.root], device="cpu", dtype=torch.float32)
    executor = Executor(registry, services={"models": manager})
    choices = registry.nodes["CheckpointLoader"].inputs["name"].current_choices()
    checkpoint = next(name for name in choices if name.split("/")[-1] == "cn-sd1")

    def go(nodes: dict[str, Any], targets: list[str] | None = None) -> Any:
        nodes = {
            "ckpt": {"type": "CheckpointLoader", "inputs": {"name": checkpoint}},
            "pos": {
                "type": "TextEncode",
                "inputs": {"clip": ["ckpt", "clip"], "text": "a red circle"},
            },
            "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": "blue"}},
            "lat": {
                "type": "EmptyLatent",
                "inputs": {"width": SIZE, "height": SIZE, "vae": ["ckpt", "vae"]},
            },
            **nodes,
        }
        workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
        result = executor.run(workflow, targets=targets or ["dec"], keep_values=True)
        assert result.status == "succeeded", result.failures
        return result

    go.manager = manager  # type: ignore[attr-defined]
    go.executor = executor  # type: ignore[attr-defined]
    go.checkpoint = checkpoint  # type: ignore[attr-defined]
    return go


def sample(positive: list[Any], negative: list[Any] | None, steps: int = STEPS) -> dict[str, Any]:
    inputs = {
        "model": ["ckpt", "model"],
        "positive": positive,
        "latent": ["lat", "latent"],
        "seed": SEED,
        "steps": steps,
        "cfg": 5.0,
        "sampler_name": "euler",
        "scheduler": "normal",
    }
    if negative is not None:
        inputs["negative"] = negative
    return {
        "k": {"type": "KSampler", "inputs": inputs},
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["ckpt", "vae"], "latent": ["k", "latent"]}},
    }


def hint_node(built: Built, key: str) -> dict[str, Any]:
    return {"type": "LoadImage", "inputs": {"image": str(built.hints[key])}}


def apply_advanced(
    net: str,
    hint: str,
    positive: list[Any],
    negative: list[Any] | None,
    strength: float,
    start: float = 0.0,
    end: float = 1.0,
) -> dict[str, Any]:
    inputs = {
        "positive": positive,
        "control_net": [net, "control_net"],
        "image": [hint, "image"],
        "strength": strength,
        "start_percent": start,
        "end_percent": end,
    }
    if negative is not None:
        inputs["negative"] = negative
    return {"type": "ControlNetApplyAdvanced", "inputs": inputs}


def reference(
    built: Built,
    nets: list[str],
    scales: list[float],
    steps: int = STEPS,
    negative: str | None = "blue",
    **kwargs: Any,
) -> torch.Tensor:
    """diffusers' StableDiffusionControlNetPipeline on the same weights and settings."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionControlNetPipeline
    from PIL import Image

    controlnet = [built.nets[k] for k in nets]
    images = [Image.open(built.hints[k]).convert("RGB") for k in nets]
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        str(built.checkpoint),
        controlnet=controlnet if len(nets) > 1 else controlnet[0],
        safety_checker=None,
        requires_safety_checker=False,
        local_files_only=True,
    )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        "a red circle",
        negative_prompt=negative,
        image=images if len(nets) > 1 else images[0],
        height=SIZE,
        width=SIZE,
        num_inference_steps=steps,
        guidance_scale=5.0,
        controlnet_conditioning_scale=scales if len(nets) > 1 else scales[0],
        generator=torch.Generator("cpu").manual_seed(SEED),
        output_type="np",
        **kwargs,
    ).images
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def plain(run: Any) -> torch.Tensor:
    return run(sample(["pos", "conditioning"], ["neg", "conditioning"])).values["dec"]["image"]


@pytest.mark.parametrize("name", ["cn-a", "cn-a.safetensors"])
def test_apply_advanced_on_both_sides_matches_the_diffusers_pipeline(
    built: Built, run: Any, name: str
) -> None:
    nodes = {
        "cn": {"type": "ControlNetLoader", "inputs": {"name": name}},
        "hint": hint_node(built, "a"),
        "apply": apply_advanced(
            "cn", "hint", ["pos", "conditioning"], ["neg", "conditioning"], 0.8
        ),
        **sample(["apply", "positive"], ["apply", "negative"]),
    }
    ours = run(nodes).values["dec"]["image"]
    theirs = reference(built, ["a"], [0.8])
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= 1e-3
    assert (ours - plain(run)).abs().max().item() > 1e-2  # the ControlNet does change it


@pytest.mark.parametrize(
    ("start", "end", "window"),
    [
        (0.5, 1.0, {"control_guidance_start": 0.5}),
        (0.0, 0.5, {"control_guidance_end": 0.5}),
    ],
)
def test_percent_range_matches_diffusers_where_both_measures_agree(
    built: Built, run: Any, start: float, end: float, window: dict[str, float]
) -> None:
    # 4 "leading" steps run timesteps 751, 501, 251, 1: the schedule's half (t = 499.5) falls
    # between the second and third, as the step fraction 0.5 does.
    nodes = {
        "cn": {"type": "ControlNetLoader", "inputs": {"name": "cn-a.safetensors"}},
        "hint": hint_node(built, "a"),
        "apply": apply_advanced(
            "cn", "hint", ["pos", "conditioning"], ["neg", "conditioning"], 1.0, start, end
        ),
        **sample(["apply", "positive"], ["apply", "negative"], steps=4),
    }
    ours = run(nodes).values["dec"]["image"]
    theirs = reference(built, ["a"], [1.0], steps=4, **window)
    assert (ours - theirs).abs().max().item() <= 1e-3
    whole = reference(built, ["a"], [1.0], steps=4)
    assert (ours - whole).abs().max().item() > 1e-3  # the range did leave steps out


def test_two_chained_controlnets_match_a_multi_controlnet_pipeline(built: Built, run: Any) -> None:
    nodes = {
        "cn_a": {"type": "ControlNetLoader", "inputs": {"name": "cn-a"}},
        "cn_b": {"type": "ControlNetLoader", "inputs": {"name": "sub/cn-b.safetensors"}},
        "hint_a": hint_node(built, "a"),
        "hint_b": hint_node(built, "b"),
        "first": apply_advanced(
            "cn_a", "hint_a", ["pos", "conditioning"], ["neg", "conditioning"], 0.8
        ),
        "second": apply_advanced(
            "cn_b", "hint_b", ["first", "positive"], ["first", "negative"], 0.5
        ),
        **sample(["second", "positive"], ["second", "negative"]),
    }
    result = run(nodes, ["dec", "first", "second"])
    first, second = result.values["first"], result.values["second"]
    assert [c.strength for c in second["positive"]["control"]] == [0.8, 0.5]
    assert second["positive"]["control"] is second["negative"]["control"]  # one batch
    assert len(first["positive"]["control"]) == 1  # the first node's output is unchanged
    assert "control" not in result.values["pos"]["conditioning"]
    ours = result.values["dec"]["image"]
    theirs = reference(built, ["a", "b"], [0.8, 0.5])
    assert (ours - theirs).abs().max().item() <= 1e-3


def test_apply_with_the_default_negative_controls_both_sides_as_comfyui(
    built: Built, run: Any
) -> None:
    nodes = {
        "cn": {"type": "ControlNetLoader", "inputs": {"name": "cn-a.safetensors"}},
        "hint": hint_node(built, "a"),
        "apply": {
            "type": "ControlNetApply",
            "inputs": {
                "conditioning": ["pos", "conditioning"],
                "control_net": ["cn", "control_net"],
                "image": ["hint", "image"],
                "strength": 0.7,
            },
        },
        **sample(["apply", "conditioning"], None),
    }
    result = run(nodes, ["dec", "apply"])
    applied = result.values["apply"]["conditioning"]
    assert applied["control"] is applied["uncond"]["control"]
    assert applied["control_apply_to_uncond"] is True
    theirs = reference(built, ["a"], [0.7], negative=None)
    assert (result.values["dec"]["image"] - theirs).abs().max().item() <= 1e-3


def test_strength_zero_passes_the_conditioning_through(built: Built, run: Any) -> None:
    nodes = {
        "cn": {"type": "ControlNetLoader", "inputs": {"name": "cn-a"}},
        "hint": hint_node(built, "a"),
        "apply": apply_advanced(
            "cn", "hint", ["pos", "conditioning"], ["neg", "conditioning"], 0.0
        ),
        **sample(["apply", "positive"], ["apply", "negative"]),
    }
    result = run(nodes, ["dec", "apply"])
    assert result.values["apply"]["positive"] is result.values["pos"]["conditioning"]
    assert torch.equal(result.values["dec"]["image"], plain(run))


def test_an_unknown_controlnet_name_is_refused_on_the_name_input(run: Any) -> None:
    from easel.core.graph import WorkflowError

    nodes = {"cn": {"type": "ControlNetLoader", "inputs": {"name": "nope.safetensors"}}}
    with pytest.raises(
        WorkflowError,
        match=r"'cn' \(ControlNetLoader\), input 'name': "
        r"'nope\.safetensors' is not one of: 'cn-a'",
    ):
        run(nodes, ["cn"])


def test_a_comfyui_api_workflow_with_controlnet_gives_the_pipeline_image(
    built: Built, run: Any
) -> None:
    """ComfyUI's own node names, input names and output slots, converted, run and compared."""
    from easel.comfy.convert import to_easel

    checkpoint = run.checkpoint
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blue", "clip": ["4", 1]}},
        "10": {
            "class_type": "ControlNetLoader",
            "inputs": {"control_net_name": "cn-a.safetensors"},
        },
        "11": {"class_type": "LoadImage", "inputs": {"image": str(built.hints["a"])}},
        "12": {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {
                "positive": ["6", 0],
                "negative": ["7", 0],
                "control_net": ["10", 0],
                "image": ["11", 0],
                "strength": 0.8,
                "start_percent": 0.0,
                "end_percent": 1.0,
            },
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": SEED,
                "steps": STEPS,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["12", 0],
                "negative": ["12", 1],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    }
    workflow = to_easel(prompt)
    assert {n["type"] for n in workflow["nodes"].values()} >= {
        "ControlNetLoader",
        "ControlNetApplyAdvanced",
    }
    result = run.executor.run(workflow, targets=["8"], keep_values=True)
    assert result.status == "succeeded", result.failures
    theirs = reference(built, ["a"], [0.8])
    assert (result.values["8"]["image"] - theirs).abs().max().item() <= 1e-3


def test_apply_nodes_copy_chain_and_refuse_a_backwards_range() -> None:
    from easel.core.context import Context
    from easel.core.node import NodeError
    from easel.models.controlnet import ControlNetHandle
    from easel.nodes.controlnet import ControlNetApply, ControlNetApplyAdvanced

    net = ControlNetHandle("cn", model=None, manager=None)
    image = torch.zeros(1, 3, 8, 8)
    uncond = {"embeds": torch.zeros(1, 2, 4)}
    positive = {"embeds": torch.ones(1, 2, 4), "uncond": uncond}
    negative = {"embeds": torch.zeros(1, 2, 4)}
    out = ControlNetApplyAdvanced.fn(
        Context(),
        positive,
        negative,
        control_net=net,
        image=image,
        strength=0.5,
        start_percent=0.2,
        end_percent=0.6,
    )
    assert "control" not in positive and "control" not in negative and "control" not in uncond
    chain = out["positive"]["control"]
    assert out["negative"]["control"] is chain and out["positive"]["uncond"]["control"] is chain
    assert [(c.strength, c.start, c.end) for c in chain] == [(0.5, 0.2, 0.6)]
    again = ControlNetApply.fn(Context(), out["positive"], net, image, strength=0.3)
    assert [c.strength for c in again["control"]] == [0.5, 0.3]
    assert [c.strength for c in chain] == [0.5]  # the earlier list is not extended
    full = {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}  # fn takes no defaults
    alone = ControlNetApplyAdvanced.fn(
        Context(), positive, None, control_net=net, image=image, **full
    )
    assert alone["negative"] is alone["positive"]["uncond"]
    with pytest.raises(NodeError, match=r"start_percent 0\.7 is after end_percent 0\.3"):
        ControlNetApplyAdvanced.fn(
            Context(),
            positive,
            negative,
            control_net=net,
            image=image,
            strength=1.0,
            start_percent=0.7,
            end_percent=0.3,
        )
    with pytest.raises(NodeError, match="link a negative"):
        ControlNetApplyAdvanced.fn(
            Context(), {"embeds": torch.ones(1, 2, 4)}, None, control_net=net, image=image, **full
        )
