"""ModelSamplingAuraFlow's `sampling` "img_to_img_velocity" (ComfyUI's IMG_TO_IMG_VELOCITY, the
model sampling Marigold v2 is trained with), checked against a computation apart from Easel's
sampler: the sample starts at the input latent (noise is ignored), the network's output v at
level s gives the denoised estimate x - v, and k-diffusion's Euler steps x + (x - denoised) / s
* (s' - s), as ComfyUI's sampler runs them, on a tiny Qwen-Image transformer called by hand."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from tests.fixtures import qwen_image_family

SIDE = 4  # latent pixels: 2x2 patches
TOKENS = 5
LEVELS = (0.8, 0.5, 0.2, 0.0)


@pytest.fixture(scope="module")
def transformer() -> Any:
    torch.manual_seed(qwen_image_family.SEED)
    return qwen_image_family._transformer()


def _inputs() -> tuple[Any, Any, Any]:
    generator = torch.Generator().manual_seed(3)
    latent = torch.randn(1, 16, SIDE, SIDE, generator=generator)
    noise = torch.randn(1, 16, SIDE, SIDE, generator=generator)
    embeds = torch.randn(1, TOKENS, qwen_image_family.TEXT_WIDTH, generator=generator)
    return latent, noise, embeds


def _velocity(transformer: Any, x: Any, level: float, embeds: Any) -> Any:
    """The network's output at `level`, packed and unpacked by QwenImagePipeline's own code."""
    from diffusers import QwenImagePipeline

    packed = QwenImagePipeline._pack_latents(x, 1, 16, SIDE, SIDE)
    with torch.no_grad():
        out = transformer(
            hidden_states=packed,
            timestep=torch.tensor([level]),
            encoder_hidden_states=embeds,
            img_shapes=[[(1, SIDE // 2, SIDE // 2)]],
            return_dict=False,
        )[0]
    return QwenImagePipeline._unpack_latents(out, SIDE * 8, SIDE * 8, 8)[:, :, 0]


def comfyui_euler(transformer: Any, latent: Any, levels: Any, embeds: Any) -> Any:
    """k-diffusion's sample_euler under IMG_TO_IMG_VELOCITY: x starts at the latent (its
    noise_scaling), denoised = x - v (its calculate_denoised)."""
    x = latent.clone()
    for level, after in itertools.pairwise(levels):
        denoised = x - _velocity(transformer, x, float(level), embeds)
        x = x + (x - denoised) / float(level) * (float(after) - float(level))
    return x


def _scheduler() -> Any:
    from diffusers import FlowMatchEulerDiscreteScheduler

    from easel.models.families.qwen_image import SCHEDULER

    config = {k: v for k, v in SCHEDULER.items() if not k.startswith("_")}
    # ComfyUI's flow: no shift (the levels are given), no terminal stretch
    plain = {"shift": 1.0, "use_dynamic_shifting": False, "shift_terminal": None}
    return FlowMatchEulerDiscreteScheduler(**{**config, **plain})


def _denoise(transformer: Any, noise: Any, latent: Any, embeds: Any, **kwargs: Any) -> Any:
    from easel.models.families.qwen_image import QWEN_IMAGE
    from easel.models.sampling import denoise

    return denoise(
        transformer,
        _scheduler(),
        noise=noise,
        positive={"embeds": embeds},
        negative=None,
        cfg=1.0,
        init_latents=latent,
        family=QWEN_IMAGE,
        sampling_kind="img_to_img_velocity",
        **kwargs,
    )


def test_velocity_steps_equal_comfyui_euler_and_ignore_the_noise(transformer: Any) -> None:
    latent, noise, embeds = _inputs()
    sigmas = torch.tensor(LEVELS)
    ours = _denoise(transformer, noise, latent, embeds, steps=3, sigmas=sigmas)
    theirs = comfyui_euler(transformer, latent, sigmas, embeds)
    assert (ours - theirs).abs().max().item() <= 1e-5
    # the template's one step at 0.5 is the input minus the network's output
    one = _denoise(transformer, noise, latent, embeds, steps=1, sigmas=torch.tensor([0.5, 0.0]))
    assert (one - (latent - _velocity(transformer, latent, 0.5, embeds))).abs().max() <= 1e-5
    # whatever the noise, the sample starts at the latent (ComfyUI's noise_scaling)
    other = _denoise(transformer, noise * 3 + 1, latent, embeds, steps=3, sigmas=sigmas)
    assert torch.equal(ours, other)


@pytest.mark.slow
def test_plain_flow_differs_and_a_stop_above_zero_is_rescaled(transformer: Any) -> None:
    """Against plain flow (where the start is (1 - s) latent + s noise and denoised x - s v),
    the kind changes the result; a run ending at 0.2 returns x / (1 - 0.2), CONST's inverse
    scaling, which IMG_TO_IMG_VELOCITY inherits."""
    from easel.models.families.qwen_image import QWEN_IMAGE
    from easel.models.sampling import denoise

    latent, noise, embeds = _inputs()
    sigmas = torch.tensor(LEVELS[:3])  # 0.8, 0.5, 0.2
    ours = _denoise(transformer, noise, latent, embeds, steps=2, sigmas=sigmas)
    theirs = comfyui_euler(transformer, latent, sigmas, embeds) / (1 - 0.2)
    assert (ours - theirs).abs().max().item() <= 1e-5
    flow = denoise(
        transformer,
        _scheduler(),
        noise=noise,
        positive={"embeds": embeds},
        negative=None,
        cfg=1.0,
        steps=2,
        init_latents=latent,
        family=QWEN_IMAGE,
        sigmas=sigmas,
    )
    assert (flow - ours).abs().max().item() > 1e-2


@pytest.mark.slow
def test_ksampler_path_steps_its_schedule_from_the_latent(transformer: Any) -> None:
    """KSampler's way (no SIGMAS: the scheduler's own levels, full denoise) starts from the
    input latent too and steps the same way."""
    from easel.models.families.qwen_image import QWEN_IMAGE
    from easel.models.sampling import FlowSchedule, denoise

    latent, noise, embeds = _inputs()
    scheduler = _scheduler()

    ours = denoise(
        transformer,
        scheduler,
        noise=noise,
        positive={"embeds": embeds},
        negative=None,
        cfg=1.0,
        steps=3,
        init_latents=latent,
        family=QWEN_IMAGE,
        flow=FlowSchedule(linear=True),
        sampling_kind="img_to_img_velocity",
    )
    levels = scheduler.sigmas  # 1, 2/3, 1/3, 0 (no shift)
    assert [round(float(s), 4) for s in levels] == [1.0, 0.6667, 0.3333, 0.0]
    theirs = comfyui_euler(transformer, latent, levels, embeds)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_model_sampling_nodes_set_and_clear_the_kind() -> None:
    from easel.models.families.qwen_image import QWEN_IMAGE
    from easel.models.handles import ModelHandle
    from easel.nodes.flux import ModelSamplingAuraFlow, ModelSamplingSD3

    model = ModelHandle("m", None, {}, 8, None, family=QWEN_IMAGE)
    velocity = ModelSamplingAuraFlow.fn(model, 1.73, "img_to_img_velocity")["model"]
    assert velocity.sampling["sampling_kind"] == "img_to_img_velocity"
    assert velocity.sampling["shift"] == 1.73
    # ComfyUI's model-sampling nodes replace the whole model sampling: plain flow again
    assert "sampling_kind" not in ModelSamplingAuraFlow.fn(velocity, 2.0, "flow")["model"].sampling
    assert "sampling_kind" not in ModelSamplingSD3.fn(velocity, 3.0)["model"].sampling
    assert "sampling_kind" not in model.sampling


def test_comfyui_sampling_value_converts() -> None:
    from easel.comfy.convert import to_easel

    prompt = {
        "3": {"class_type": "UNETLoader", "inputs": {"unet_name": "q.safetensors"}},
        "4": {
            "class_type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["3", 0], "shift": 1.73, "sampling": "img_to_img_velocity"},
        },
        "5": {
            "class_type": "ModelSamplingAuraFlow",
            "inputs": {"model": ["4", 0], "shift": 1.73, "sampling": "flow"},
        },
    }
    nodes = to_easel(prompt)["nodes"]
    assert nodes["4"]["inputs"]["sampling"] == "img_to_img_velocity"
    assert "sampling" not in nodes["5"]["inputs"]  # flow: the node's default
