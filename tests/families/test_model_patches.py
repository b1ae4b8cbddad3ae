"""ComfyUI's model patches: ModelPatchLoader recognises the files of models/model_patches/ by
their keys, and QwenImageDiffsynthControlnet applies them (tiny random weights in ComfyUI's
file layout, CPU fp32):

- ComfyUI's `image_z_image_turbo_fun_union_controlnet` template (a subgraph: Canny ->
  QwenImageDiffsynthControlnet with the Z-Image Fun ControlNet, ModelSamplingAuraFlow, KSampler
  at cfg 1) gives diffusers' ZImageControlNetPipeline image for the template's prompt, seed and
  Canny image (max abs pixel difference 1e-3, plus the saved PNG's rounding);
- Qwen-Image's DiffSynth blockwise ControlNet (hand-written: diffusers has no class for it)
  equals an independent computation: the transformer's blocks wrapped by the test, the control
  block written out from the file's tensors (RMSNorm, Linear, GELU, Linear);
- ComfyUI's `image_qwen_image_controlnet_patch` template (ScaleToTotalPixels -> Canny -> the
  DiffSynth canny ControlNet, VAEEncode for the latent, KSampler at cfg 2.5) runs with the
  patch applied (the slow variants check the image changes with its strength);
- unknown and mismatched patches are refused with errors naming the input.

Sizes and steps are made small; the Z-Image template's `res_multistep` sampler is swapped for
`euler`, the sampler the pipeline has. More variants: test_model_patches_variants.py (slow).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.families.workflows import SIZE, as_tensor, template
from tests.fixtures import model_patch_files
from tests.fixtures.model_patch_files import QWEN_PATCH, ZIMAGE_PATCH, executor_for

PACKAGE = "comfyui_workflow_templates_json"
needs_templates = pytest.mark.skipif(
    importlib.util.find_spec(PACKAGE) is None,
    reason="the templates corpus is in the dev extra (in CI)",
)

patch_files = model_patch_files.patch_files
TOLERANCE = 1e-3
PNG_TOLERANCE = TOLERANCE + 0.5 / 255  # the saved PNG's rounding
PROMPT = "a red circle on a blue square"
STRENGTH = 0.75
STEPS = 2
QWEN_FILES = {
    "diffusion_models/qwen_image_fp8_e4m3fn.safetensors": "diffusion_models/qwen_image",
    "text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors": "text_encoders/qwen_2.5_vl_7b",
    "vae/qwen_image_vae.safetensors": "vae/qwen_image_vae",
    f"model_patches/{QWEN_PATCH}": f"model_patches/{QWEN_PATCH.removesuffix('.safetensors')}",
}


def control_picture(path: Path) -> Any:
    """A Canny-like control image (white lines on black), saved as a PNG."""
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    pixels[16:18, 8:56] = 255
    pixels[8:56, 40:42] = 255
    pixels[30:50, 12:14] = 255
    picture = PILImage.fromarray(pixels, "RGB")
    picture.save(path)
    return picture


def zimage_workflow(image: Path, *, patch: bool = True, steps: int = 3) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        "unet": {
            "type": "DiffusionModelLoader",
            "inputs": {"name": "z_image_turbo_bf16.safetensors", "weight_dtype": "default"},
        },
        "clip": {
            "type": "TextEncoderLoader",
            "inputs": {"name": "qwen_3_4b.safetensors", "type": "lumina2"},
        },
        "vae": {"type": "VAELoader", "inputs": {"name": "ae.safetensors"}},
        "pos": {"type": "TextEncode", "inputs": {"clip": ["clip", "clip"], "text": PROMPT}},
        "lat": {"type": "EmptyLatent", "inputs": {"width": SIZE, "height": SIZE}},
        "img": {"type": "LoadImage", "inputs": {"image": str(image)}},
        "patch": {"type": "ModelPatchLoader", "inputs": {"name": ZIMAGE_PATCH}},
        "cn": {
            "type": "QwenImageDiffsynthControlnet",
            "inputs": {
                "model": ["unet", "model"],
                "model_patch": ["patch", "model_patch"],
                "vae": ["vae", "vae"],
                "image": ["img", "image"],
                "strength": STRENGTH,
            },
        },
        "k": {
            "type": "KSampler",
            "inputs": {
                "model": ["cn", "model"] if patch else ["unet", "model"],
                "positive": ["pos", "conditioning"],
                "latent": ["lat", "latent"],
                "seed": 42,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
            },
        },
        "dec": {"type": "VAEDecode", "inputs": {"vae": ["vae", "vae"], "latent": ["k", "latent"]}},
    }
    if not patch:
        for name in ("img", "patch", "cn"):
            del nodes[name]
    return nodes


def with_patch(nodes: dict[str, Any], patch: str, image: Path) -> dict[str, Any]:
    """A split-file workflow (`unet`, `vae`, `k`) with `patch` applied to its model through
    QwenImageDiffsynthControlnet, the control image loaded from `image`."""
    nodes = {**nodes, "k": {**nodes["k"], "inputs": {**nodes["k"]["inputs"]}}}
    nodes["img"] = {"type": "LoadImage", "inputs": {"image": str(image)}}
    nodes["patch"] = {"type": "ModelPatchLoader", "inputs": {"name": patch}}
    nodes["cn"] = {
        "type": "QwenImageDiffsynthControlnet",
        "inputs": {
            "model": nodes["k"]["inputs"]["model"],
            "model_patch": ["patch", "model_patch"],
            "vae": ["vae", "vae"],
            "image": ["img", "image"],
            "strength": STRENGTH,
        },
    }
    nodes["k"]["inputs"]["model"] = ["cn", "model"]
    return nodes


def run(executor: Any, nodes: dict[str, Any]) -> Any:
    workflow = {"format": "easel.workflow", "version": 1, "nodes": nodes}
    return executor.run(workflow, targets=["dec"], keep_values=True)


def _only(nodes: dict[str, Any], node_type: str) -> str:
    [found] = [i for i, n in nodes.items() if n["type"] == node_type]
    return found


def input_picture(path: Path) -> None:
    """A picture with edges for Canny to find: a bright square and a bar on a dark ground."""
    import numpy as np
    from PIL import Image as PILImage

    pixels = np.full((SIZE, SIZE, 3), 30, dtype=np.uint8)
    pixels[12:40, 10:38] = (220, 60, 40)
    pixels[44:52, 8:58] = (40, 200, 220)
    PILImage.fromarray(pixels, "RGB").save(path)


def saved_image(result: Any, folder: Path, node: str) -> Any:
    """The image SaveImage `node` wrote (PreviewImage writes one too)."""
    import numpy as np
    from PIL import Image as PILImage

    assert result.ok, result.failures
    [saved] = result.ui[node]["files"]
    pixels = np.asarray(PILImage.open(folder / saved).convert("RGB"))
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255


@needs_templates
def test_zimage_fun_controlnet_template_equals_the_pipeline(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import ZImageControlNetPipeline

    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    root = patch_files.zimage_root
    input_picture(tmp_path / "input.png")
    workflow = to_easel(template("image_z_image_turbo_fun_union_controlnet"))
    nodes = workflow["nodes"]
    sampler = _only(nodes, "KSampler")
    inputs = nodes[sampler]["inputs"]
    assert nodes[_only(nodes, "ModelPatchLoader")]["inputs"]["name"] == ZIMAGE_PATCH
    assert float(inputs["cfg"]) == 1.0
    set_input(workflow, f"{_only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{sampler}.sampler_name", "euler")
    executor = executor_for(root, monkeypatch)
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    ours = saved_image(result, tmp_path / "out", _only(nodes, "SaveImage"))

    import numpy as np
    from PIL import Image as PILImage

    canny = result.values[_only(nodes, "Canny")]["image"]
    assert canny.shape == (1, 3, SIZE, SIZE) and float(canny.max()) == 1.0
    # as a picture: the pipeline takes tensors as already in [-1, 1] (Canny's are 0 or 1)
    edges = (canny[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    control = nodes[_only(nodes, "QwenImageDiffsynthControlnet")]["inputs"]
    base = patch_files.zimage
    pipe = ZImageControlNetPipeline(
        **{k: getattr(base, k) for k in ("scheduler", "vae", "text_encoder", "tokenizer")},
        transformer=base.transformer,
        controlnet=patch_files.zimage_controlnet,
    )
    pipe.set_progress_bar_config(disable=True)
    theirs = as_tensor(
        pipe(
            prompt=nodes[inputs["positive"][0]]["inputs"]["text"],
            control_image=PILImage.fromarray(edges, "RGB"),
            controlnet_conditioning_scale=float(control["strength"]),
            height=SIZE,
            width=SIZE,
            num_inference_steps=STEPS,
            guidance_scale=0.0,
            generator=torch.Generator("cpu").manual_seed(int(inputs["seed"])),
            output_type="np",
        ).images
    )
    assert ours.shape == theirs.shape == (1, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max().item() <= PNG_TOLERANCE


def run_qwen_template(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strength: float = 1.0
) -> tuple[Any, Any, dict[str, Any]]:
    """The Qwen DiffSynth template run on the tiny files: (saved image, result, nodes)."""
    from easel.comfy.convert import to_easel
    from easel.workflow_edit import set_input

    root = tmp_path / "root"
    for name, source in QWEN_FILES.items():
        (root / "models" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(
            patch_files.qwen_root / "models" / f"{source}.safetensors", root / "models" / name
        )
    shutil.copytree(patch_files.qwen_root / "ComfyUI", root / "ComfyUI")
    input_picture(tmp_path / "input.png")
    workflow = to_easel(template("image_qwen_image_controlnet_patch"))
    nodes = workflow["nodes"]
    sampler = _only(nodes, "KSampler")
    set_input(workflow, f"{_only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    set_input(workflow, f"{_only(nodes, 'ScaleToTotalPixels')}.megapixels", 0.01)  # ~100x100
    set_input(workflow, f"{sampler}.steps", STEPS)
    set_input(workflow, f"{_only(nodes, 'QwenImageDiffsynthControlnet')}.strength", strength)
    executor = executor_for(root, monkeypatch)
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    return saved_image(result, tmp_path / "out", _only(nodes, "SaveImage")), result, nodes


@needs_templates
def test_qwen_diffsynth_template_runs(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, result, nodes = run_qwen_template(patch_files, tmp_path, monkeypatch)
    assert ours.shape[:2] == (1, 3) and 80 <= ours.shape[2] <= 112
    assert float(ours.std()) > 0.01
    patched = result.values[_only(nodes, "QwenImageDiffsynthControlnet")]["model"]
    [control] = patched.model_patches
    assert control.strength == 1.0 and control.latents.cache  # encoded at the latent's size


def _rms(x: Any, weight: Any) -> Any:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight


def reference_control(state: dict[str, Any], index: int, image: Any, control: Any) -> Any:
    """DiffSynth's control block written out from the file's tensors."""
    stem = f"controlnet_blocks.{index}."
    mixed = _rms(image, state[stem + "x_rms.weight"]) + _rms(control, state[stem + "y_rms.weight"])
    hidden = mixed @ state[stem + "input_proj.weight"].T + state[stem + "input_proj.bias"]
    hidden = torch.nn.functional.gelu(hidden)
    return hidden @ state[stem + "output_proj.weight"].T + state[stem + "output_proj.bias"]


class _ReferenceBlock(torch.nn.Module):
    """A transformer block followed by the control, as the test computes it."""

    def __init__(self, block: Any, index: int, state: dict[str, Any], control: Any) -> None:
        super().__init__()
        self.block, self.index, self.state, self.control = block, index, state, control

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        text, image = self.block(*args, **kwargs)
        count = self.control.shape[1]
        added = reference_control(self.state, self.index, image[:, :count], self.control)
        return text, torch.cat([image[:, :count] + 0.5 * added, image[:, count:]], dim=1)


def test_qwen_diffsynth_controlnet_equals_an_independent_computation(patch_files: Any) -> None:
    """The transformer called through the patched ModelHandle equals the same transformer with
    its blocks wrapped by the test's own control computation (the control latent's 2x2 patches
    through `img_in`), for a latent with reference tokens after the image's."""
    from easel.models.flux_denoiser import pack
    from easel.models.handles import ModelHandle
    from easel.models.model_patches import QWEN_BLOCKWISE, ModelPatchHandle
    from easel.models.qwen_blockwise_controlnet import QwenBlockwiseControl, load

    state = patch_files.qwen_state
    transformer = patch_files.qwen.pipe.transformer
    generator = torch.Generator().manual_seed(3)
    control_latent = torch.randn(1, 16, 8, 8, generator=generator)
    module = load(state, torch.float32)
    patch = ModelPatchHandle("canny", QWEN_BLOCKWISE, module, None)
    control = QwenBlockwiseControl(patch.module, lambda h, w: control_latent, 0.5, None)
    handle = ModelHandle("qwen", transformer, {}, 8, None, model_patches=(control,))
    tokens = torch.randn(2, 16 + 4, 64, generator=generator)  # 16 image tokens, 4 reference
    text = torch.randn(2, 5, transformer.config.joint_attention_dim, generator=generator)
    kwargs = {
        "hidden_states": tokens,
        "timestep": torch.tensor([0.6, 0.6]),
        "encoder_hidden_states": text,
        "img_shapes": [[(1, 4, 4), (1, 2, 2)]] * 2,
        "return_dict": False,
    }
    with torch.inference_mode():
        ours = handle.forward()(**kwargs)[0]
        plain = transformer(**kwargs)[0]
        control_tokens = pack(control_latent) @ state["img_in.weight"].T + state["img_in.bias"]
        blocks = transformer.transformer_blocks
        wrapped = torch.nn.ModuleList(
            _ReferenceBlock(block, i, state, control_tokens) for i, block in enumerate(blocks)
        )
        transformer.transformer_blocks = wrapped
        try:
            theirs = transformer(**kwargs)[0]
        finally:
            transformer.transformer_blocks = blocks
        again = transformer(**kwargs)[0]
    assert (ours - theirs).abs().max().item() <= 1e-5
    assert (ours - plain).abs().max().item() > 1e-3  # the control is seen
    assert torch.equal(again, plain)  # the shared transformer is left as it was


def test_unknown_and_mismatched_patches_are_clear_node_errors(
    patch_files: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file of unknown keys is refused by ModelPatchLoader naming its input; a Qwen-Image
    patch on a Z-Image model by QwenImageDiffsynthControlnet."""
    import shutil

    from safetensors.torch import save_file

    patches = patch_files.zimage_root / "models" / "model_patches"
    save_file({"something.weight": torch.zeros(2, 2)}, str(patches / "mystery.safetensors"))
    source = patch_files.qwen_root / "models" / "model_patches" / QWEN_PATCH
    shutil.copyfile(source, patches / QWEN_PATCH)
    control_picture(tmp_path / "canny.png")
    executor = executor_for(patch_files.zimage_root, monkeypatch)
    nodes = zimage_workflow(tmp_path / "canny.png")
    nodes["patch"]["inputs"]["name"] = "mystery.safetensors"
    result = run(executor, nodes)
    [failure] = result.failures
    assert failure.node == "patch" and failure.input == "name"
    assert "not a model patch Easel knows" in failure.message
    nodes["patch"]["inputs"]["name"] = QWEN_PATCH
    result = run(executor, nodes)
    [failure] = result.failures
    assert failure.node == "cn" and failure.input == "model_patch"
    assert "made for Qwen-Image models, not Z-Image models" in failure.message


def test_layer_places_follow_comfyui() -> None:
    """Version 1's 6 control blocks feed layers 0, 5, ..., 25 of Z-Image's 30; version 2's 15
    every other layer."""
    from easel.models.zimage_controlnet import layer_places

    assert layer_places(30, 6) == [0, 5, 10, 15, 20, 25]
    assert layer_places(30, 15) == list(range(0, 30, 2))
