"""HunyuanVideo 1.5 (Capybara's architecture) from ComfyUI's split files (the transformer and
the VAE in Tencent's original keys, Qwen2.5-VL in its original keys, byT5 in T5 keys) through
Easel's nodes gives diffusers' HunyuanVideo15Pipeline image, one frame (CPU fp32, tiny random
weights, max abs pixel diff 1e-3).

Two settings of the pipeline are made to fit the tiny models: its count of template tokens to
drop (108 with Qwen's real tokenizer) is the tiny tokenizer's; its padding (prompts to 1000 and
256 tokens, 729 zero image tokens, all masked out) is shorter, for speed. The pipeline's sigmas
(linspace(1, 0, n + 1) without the last, then the shift) are ComfyUI's "simple" schedule, so
Easel samples with the template's custom-sampling nodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import as_tensor, custom_sampling, image_of
from tests.fixtures import hunyuan15_family

hunyuan15_models = hunyuan15_family.hunyuan15_models
hunyuan15_manager = hunyuan15_family.hunyuan15_manager
run_hunyuan15 = hunyuan15_family.run_hunyuan15

TOLERANCE = 1e-3
WIDTH, HEIGHT = 64, 48
PROMPT = 'a sign that says "HELLO" on a red wall'
NEGATIVE = "blurry, low quality"


def split_workflow(prompt: str = PROMPT, negative: str = NEGATIVE) -> dict[str, Any]:
    """ComfyUI's Capybara template shape: UNETLoader, DualCLIPLoader type hunyuan_video_15,
    VAELoader, CLIPTextEncode x2, EmptyHunyuanVideo15Latent (one frame); the sampler and
    VAEDecode come from tests.families.workflows.custom_sampling."""
    return {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "capybara_v0.1.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "DualTextEncoderLoader",
            "inputs": {
                "name1": "qwen_2.5_vl_7b.safetensors",
                "name2": "byt5_small_glyphxl_fp16.safetensors",
                "type": "hunyuan_video_15",
            },
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "hunyuanvideo15_vae_fp16.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": prompt}},
        "neg": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": negative}},
        "lat": {
            "type": "EmptyHunyuanVideo15Latent",
            "inputs": {"width": WIDTH, "height": HEIGHT, "length": 1, "batch_size": 1},
        },
    }


def fit(pipe: Any, *prompts: str) -> None:
    """The pipeline's template-token count set to the tiny tokenizer's, its padding to the
    longest of `prompts` (padding only: the transformer gives padded and zero tokens no
    weight)."""
    from easel.models.families.hunyuan15 import PROMPT_TEMPLATE
    from easel.models.qwen_text import template_tokens

    pipe.set_progress_bar_config(disable=True)
    drop = template_tokens(pipe.tokenizer, PROMPT_TEMPLATE)
    pipe.prompt_template_encode_start_idx = drop
    longest = max(len(pipe.tokenizer(PROMPT_TEMPLATE.format(p)).input_ids) for p in prompts)
    pipe.tokenizer_max_length = longest - drop
    pipe.tokenizer_2_max_length = pipe.vision_num_semantic_tokens = 64


def reference(pipe: Any, *, seed: int = 42, **kwargs: Any) -> Any:
    """The pipeline's image for Easel's noise of `seed` (one frame)."""
    fit(pipe, kwargs["prompt"], kwargs.get("negative_prompt") or " ")
    noise = torch.randn(
        (1, 32, HEIGHT // 16, WIDTH // 16), generator=torch.Generator("cpu").manual_seed(seed)
    )
    with torch.no_grad():
        out = pipe(
            height=HEIGHT,
            width=WIDTH,
            num_frames=1,
            latents=noise.unsqueeze(2),
            output_type="np",
            **kwargs,
        ).frames
    return as_tensor(out[:, 0])


@pytest.mark.slow  # the CI budget: the text-to-image template test makes the same comparison
def test_hunyuan15_split_files_equal_hunyuan_video15_pipeline(
    hunyuan15_models: Any, run_hunyuan15: Any
) -> None:
    """CFG 6 (the template's), a negative prompt, quoted text for byT5 in the prompt."""
    ours = image_of(run_hunyuan15(custom_sampling(split_workflow(), cfg=6.0), ["dec"]))
    theirs = reference(
        hunyuan15_models.pipe, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3)
    assert ours.shape == theirs.shape == (1, 3, HEIGHT, WIDTH)
    assert float(ours.std()) > 0.01
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def test_template_and_system_message_are_the_pipeline_s(hunyuan15_models: Any) -> None:
    """Easel's prompt template is the pipeline's system message in Qwen2's chat template."""
    from easel.models.families.hunyuan15 import PROMPT_TEMPLATE, SYSTEM_MESSAGE

    pipe = hunyuan15_models.pipe
    assert pipe.system_message == SYSTEM_MESSAGE
    rendered = pipe.tokenizer.apply_chat_template(
        [[{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": "x"}]],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert rendered == [PROMPT_TEMPLATE.format("x")]


def test_byt5_and_qwen_files_are_needed_together(run_hunyuan15: Any) -> None:
    """DualCLIPLoader type hunyuan_video_15 with two Qwen files: the error names both files
    and what is expected."""
    nodes = split_workflow()
    nodes["clip"]["inputs"]["name2"] = "qwen_2.5_vl_7b.safetensors"
    result = run_hunyuan15(nodes, ["pos"])
    assert result.status != "succeeded"
    message = str(result.failures)
    assert "qwen_2.5_vl_7b.safetensors" in message and "byT5" in message


@pytest.mark.parametrize("length", [5])
def test_more_than_one_frame_is_refused(run_hunyuan15: Any, length: int) -> None:
    nodes = split_workflow()
    nodes["lat"]["inputs"]["length"] = length
    result = run_hunyuan15(nodes, ["lat"])
    assert result.status != "succeeded"
    assert "length must be 1" in str(result.failures)


@pytest.mark.slow
def test_diffusers_folder_gives_the_pipeline_image(
    hunyuan15_models: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A saved HunyuanVideo15Pipeline folder loads with CheckpointLoader (Qwen2.5-VL's language
    model, byT5, the VAE) and gives its image."""
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager

    hunyuan15_models.pipe.save_pretrained(str(tmp_path / "hunyuan15"), safe_serialization=True)
    monkeypatch.setenv("EASEL_MODELS_DIR", str(tmp_path))
    manager = ModelManager([tmp_path], device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    split = split_workflow()
    nodes = custom_sampling(
        {
            "ckpt": {"type": "CheckpointLoader", "inputs": {"name": "hunyuan15"}},
            "pos": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": PROMPT}},
            "neg": {"type": "TextEncode", "inputs": {"clip": ["ckpt", "clip"], "text": NEGATIVE}},
            "lat": split["lat"],
        },
        cfg=6.0,
    )
    for name in ("guider", "sigmas"):
        nodes[name]["inputs"]["model"] = ["ckpt", "model"]
    nodes["dec"]["inputs"]["vae"] = ["ckpt", "vae"]
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    ours = image_of(executor.run(workflow, targets=["dec"], keep_values=True))
    theirs = reference(
        hunyuan15_models.pipe, prompt=PROMPT, negative_prompt=NEGATIVE, num_inference_steps=3
    )
    assert (ours - theirs).abs().max().item() <= TOLERANCE


def comfy_names(original: dict[str, Any]) -> dict[str, Any]:
    """Tencent's keys -> ComfyUI's own module names (q/k/v fused, `img_mod.lin`, `img_mlp.0`,
    `time_in.in_layer`): what ComfyUI's model holds after its load-time renames."""
    import re

    from easel.models.hunyuan15_keys import COMFY_NAMES

    out: dict[str, Any] = {}
    fused: dict[str, dict[str, Any]] = {}
    for key, value in original.items():
        qkv = re.match(r"(double_blocks\.\d+\.(?:img|txt)_attn)_([qkv])\.(weight|bias)$", key)
        if qkv:
            fused.setdefault(f"{qkv.group(1)}.qkv.{qkv.group(3)}", {})[qkv.group(2)] = value
            continue
        new = key
        for comfy, tencent in COMFY_NAMES:
            if comfy.startswith(".mlp.") and "individual_token_refiner" not in new:
                continue
            new = new.replace(tencent, comfy)
        out[new] = value
    for key, parts in fused.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def test_comfy_module_names_and_prefix_load_the_same_transformer(hunyuan15_models: Any) -> None:
    """A transformer file in ComfyUI's own module names under `model.diffusion_model.` is
    recognised, sized and renamed to exactly diffusers' weights, as Tencent's layout is."""
    from easel.models.families import hunyuan15
    from easel.models.hunyuan15_keys import transformer_to_diffusers

    transformer = hunyuan15_models.pipe.transformer
    original = hunyuan15_family.transformer_original(transformer)
    comfy = {f"model.diffusion_model.{k}": v for k, v in comfy_names(original).items()}
    assert "model.diffusion_model.double_blocks.0.img_attn.qkv.weight" in comfy
    assert hunyuan15.recognise(comfy) is not None
    config = hunyuan15.transformer_config(comfy)
    assert config == hunyuan15.transformer_config(original)

    def same(a: Any, b: Any) -> bool:
        return tuple(a) == tuple(b) if isinstance(a, (list, tuple)) else bool(a == b)

    assert all(same(value, transformer.config[key]) for key, value in config.items())
    converted = transformer_to_diffusers(comfy, "model.diffusion_model.")
    state = transformer.state_dict()
    assert set(converted) == set(state)
    assert all(torch.equal(converted[k], state[k]) for k in state)
